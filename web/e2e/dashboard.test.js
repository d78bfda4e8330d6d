// Browser tests of the dashboard: a real mqstream node on 127.0.0.1, real
// headless Chromium, exact fixtures. Run by scripts/web-test.sh.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, launch, openPage, rest, eventually } from './harness.js';
import { Client } from './mqtt.js';

let srv, browser;

before(async () => {
  srv = await startServer();
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

// text returns the trimmed text of the first element matching sel.
async function text(page, sel) {
  return (await page.locator(sel).first().textContent()).trim();
}

describe('dashboard', () => {
  test('overview: first view small (its time printed), one node row, every width', async () => {
    for (const [width, height] of [[1280, 800], [390, 844]]) {
      const p = await openPage(browser, srv, { width, height });
      await p.page.goto(srv.base + '/ui/assets/icon.svg'); // warms the browser up: the first page of a new process is slow
      const t0 = Date.now();
      await p.page.goto(srv.base + '/');
      await p.page.waitForSelector('[data-card=nodes] .value:not(:empty)');
      await eventually('the overview cards to fill', async () => (await text(p.page, '[data-card=nodes] .value')) === '1 / 1');
      const ov = await rest(srv, 'GET', '/v1/overview');
      assert.equal(await text(p.page, '[data-card=queries] .value'), String(ov.queries), 'the queries card shows the overview figure');
      // Ready: the first overview figures shown, measured by the page from
      // the start of the navigation (the test's own round trips to the
      // browser are not the page's time).
      const ready = await p.page.evaluate(() => performance.getEntriesByType('mark').find((m) => m.name === 'mq-first-data')?.startTime);
      console.log('first view ready after ' + Math.round(ready) + ' ms (' + (Date.now() - t0) + ' ms as the test saw it) at width ' + width);
      // Printed, not asserted: a timing bound fails on a busy machine
      // (CI once measured 668 ms on two cores after the Docker step).
      assert.ok(ready > 0, 'the page marks when its first figures are shown (mq-first-data)');
      await p.page.waitForSelector('.uplot');
      assert.equal(await p.page.locator('table.nodes tbody tr').count(), 1);
      // Disk free: the bytes free on the node's data disk, a plausible
      // figure (more than nothing, no more than the disk), shown in units.
      assert.equal(await text(p.page, 'table.nodes thead th:nth-child(6)'), 'Disk free');
      const disk = await p.page.waitForSelector('table.nodes [data-col=disk_free] [data-bytes]');
      const free = Number(await disk.getAttribute('data-bytes'));
      const cl = await rest(srv, 'GET', '/v1/cluster');
      assert.ok(free > 0 && free <= cl.members[0].disk_total_bytes, 'disk free ' + free + ' of ' + cl.members[0].disk_total_bytes);
      assert.match(await disk.textContent(), /^\s*[\d.]+ (B|KiB|MiB|GiB|TiB)\s+of [\d.]+ (B|KiB|MiB|GiB|TiB)\s*$/);
      assert.ok(p.bytes() < 200 * 1024, 'transferred ' + p.bytes() + ' bytes, want < 200 KB');
      await p.shot('overview');
      await p.check();
      await p.ctx.close();
    }
  });

  test('streams: published counts appear', async () => {
    for (let i = 0; i < 7; i++) await rest(srv, 'POST', '/v1/publish', { topic: 'sensors/1/t', payload: { temp: 20 + i * 3 }, qos: 1 });
    const p = await openPage(browser, srv);
    await p.page.goto(srv.base + '/#/streams');
    await eventually('sensors to show 7 records', async () => (await text(p.page, 'tr[data-stream=sensors] [data-col=records]')) === '7');
    await p.shot('streams');
    await p.page.click('tr[data-stream=sensors] a');
    await p.page.waitForSelector('dl.facts');
    await p.shot('stream-detail');
    await p.check();
    await p.ctx.close();
  });

  test('messages: seek to offset 10, WHERE filters, live tail, write a test record', async () => {
    const recs = [];
    for (let i = 0; i < 20; i++) recs.push({ topic: 'weather/x', payload: { temp: i * 2, i } });
    await rest(srv, 'POST', '/v1/streams/weather/records', { records: recs });
    const p = await openPage(browser, srv);
    await p.page.goto(srv.base + '/#/browse/weather');
    await p.page.waitForSelector('ol.records li');
    await p.page.selectOption('select[aria-label="Seek by"]', 'offset');
    await p.page.fill('input[aria-label="Seek value"]', '10');
    await p.page.click('button:has-text("Go")');
    await eventually('offset 10 first', async () => (await p.page.locator('ol.records li').first().getAttribute('data-offset')) === '10');

    await p.page.fill('input[aria-label="Where"]', 'temp > 30');
    await p.page.selectOption('select[aria-label="Seek by"]', 'newest');
    await p.page.click('button:has-text("Go")');
    // temp = 2i > 30 for i = 16..19: offsets 16..19.
    await eventually('only temp > 30', async () => {
      const offs = await p.page.locator('ol.records li').evaluateAll((els) => els.map((e) => e.dataset.offset));
      return offs.join(',') === '16,17,18,19';
    });
    await p.shot('messages');

    await p.page.fill('input[aria-label="Where"]', '');
    await p.page.click('button:has-text("Go")');
    await p.page.check('text=Live tail');
    await eventually('the tail to start', async () => (await p.page.locator('p.meta').textContent()).includes('following'));
    // The tail reads from next_offset; give the stream a moment to be
    // followed, then append and expect it within 2 s.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await rest(srv, 'POST', '/v1/streams/weather/records', { topic: 'weather/x', payload: { temp: 99, tail: true } });
    await p.page.waitForSelector('ol.records li[data-offset="20"]', { timeout: 2000 });
    assert.ok(Date.now() - t0 < 2000);

    await p.page.fill('input[aria-label="Payload"]', '{"temp": 41}');
    await p.page.click('button:has-text("Write")');
    await p.page.waitForSelector('p.ok:has-text("Stored at offset 21")');
    await p.check();
    await p.ctx.close();
  });

  test('groups: lag and trend follow a paused, resumed and reset member', async () => {
    const member = await Client.connect(srv.mqttPort, 'worker-1');
    await member.subscribe('$share/g1/jobs/#');
    const p = await openPage(browser, srv);
    await p.page.goto(srv.base + '/#/groups');
    const lagCell = 'tr[data-group=g1] [data-col=lag]';
    const trend = 'tr[data-group=g1] [data-trend]';
    // The node has sampled the new group: a trend needs a past to compare with.
    await eventually('g1 caught up', async () => (await p.page.locator(trend).getAttribute('data-trend')) === 'caught_up');
    const pub = await Client.connect(srv.mqttPort, 'publisher');
    for (let i = 0; i < 10; i++) await pub.publish('jobs/a', 'job ' + i);
    await eventually('10 deliveries', () => member.messages.length === 10);
    assert.equal(member.ack(4), 4);
    // Published 10, acknowledged 4: lag 6, growing (it was 0 before).
    await eventually('lag 6 and growing', async () => (await text(p.page, lagCell)) === '6' &&
      (await p.page.locator(trend).getAttribute('data-trend')) === 'growing');
    await p.shot('groups');
    // The trend compares the lag with its value 10 s before (history.TrendWindow).
    // Hold the lag at 6 until that comparison sees no change ("stalled": nothing
    // acknowledged either); a lag that falls after that shows "draining" for a
    // whole window, whatever the machine's pace.
    await eventually('stalled at lag 6', async () => (await text(p.page, lagCell)) === '6' &&
      (await p.page.locator(trend).getAttribute('data-trend')) === 'stalled', 30000);
    member.ack(3); // resumes: the lag falls below what it was 10 s before
    await eventually('draining', async () => (await text(p.page, lagCell)) === '3' &&
      (await p.page.locator(trend).getAttribute('data-trend')) === 'draining', 20000);
    await p.page.click('tr[data-group=g1] a');
    await p.page.waitForSelector('[data-value=lag]');
    // The member's node: standalone, this node, by its id.
    const node = (await rest(srv, 'GET', '/v1/node')).id;
    await eventually('worker-1 on ' + node, async () => (await text(p.page, 'tr[data-member=worker-1] [data-col=node]')) === node);
    await p.page.waitForSelector('.uplot');
    await p.shot('group-detail');
    await p.page.selectOption('select[aria-label=Position]', 'latest');
    await p.page.click('button:has-text("Seek")');
    await p.page.click('button:has-text("Confirm")');
    await eventually('lag 0 after the reset', async () => (await text(p.page, '[data-value=lag]')) === '0');
    await p.check();
    await p.ctx.close();
    member.close();
    pub.close();
  });

  test('sql: the stats query renders, a bad statement shows its position', async () => {
    const p = await openPage(browser, srv, { expected: ['/v1/query'] });
    await p.page.goto(srv.base + '/#/sql');
    await p.page.click('button:has-text("Run")');
    await p.page.waitForSelector('table.result th:has-text("total_throughput")');
    assert.ok(await p.page.locator('table.result tbody tr').count() >= 1);
    await p.shot('sql');
    await p.page.fill('textarea.sql', 'SELECT nosuch FROM streams');
    await p.page.click('button:has-text("Run")');
    const pos = await p.page.waitForSelector('pre.errpos');
    assert.equal(await pos.getAttribute('data-line'), '1');
    assert.equal(await pos.getAttribute('data-column'), '8');
    await p.check();
    await p.ctx.close();
  });

  test('sql: EXPLAIN shows the plan, its errors point into the statement', async () => {
    const p = await openPage(browser, srv, { expected: ['/v1/query'] });
    await p.page.goto(srv.base + '/#/sql');
    await p.page.fill('textarea.sql', 'SELECT name, records FROM streams WHERE records > 3');
    await p.page.click('button:has-text("Explain")');
    await p.page.waitForSelector('table.plan th:has-text("step")');
    const steps = await p.page.locator('table.plan tbody tr td:first-child').allTextContents();
    assert.ok(steps.length >= 2, 'plan steps ' + steps);
    assert.ok(await p.page.locator('table.plan td:has-text("streams")').count() >= 1, 'the plan names the table it reads');
    await p.shot('sql-explain');
    // The caret counts in the EXPLAIN statement sent: column 8 + 8.
    await p.page.fill('textarea.sql', 'SELECT nosuch FROM streams');
    await p.page.click('button:has-text("Explain")');
    const pos = await p.page.waitForSelector('pre.errpos');
    assert.equal(await pos.getAttribute('data-column'), '16');
    assert.match(await pos.textContent(), /EXPLAIN SELECT nosuch FROM streams\n {15}\^/);
    await p.check();
    await p.ctx.close();
  });

  test('sql: continuous queries listed, paused, resumed and terminated', async () => {
    await rest(srv, 'POST', '/v1/streams', { name: 'cqin' });
    await rest(srv, 'POST', '/v1/query', { sql: 'CREATE STREAM cqout AS SELECT _payload AS p FROM cqin' });
    const p = await openPage(browser, srv);
    await p.page.goto(srv.base + '/#/sql');
    const row = 'tr[data-query=cqout]';
    const status = row + ' [data-status]';
    await eventually('cqout running', async () => (await p.page.locator(status).getAttribute('data-status')) === 'running');
    await p.shot('sql-queries');
    await p.page.click(row + ' button:has-text("Pause")');
    await eventually('cqout paused', async () => (await p.page.locator(status).getAttribute('data-status')) === 'paused');
    assert.equal((await rest(srv, 'GET', '/v1/queries/cqout')).status, 'paused');
    await p.page.click(row + ' button:has-text("Resume")');
    await eventually('cqout resumed', async () => (await p.page.locator(status).getAttribute('data-status')) !== 'paused');
    assert.notEqual((await rest(srv, 'GET', '/v1/queries/cqout')).status, 'paused');
    // Terminate asks first: cancelling keeps the query.
    await p.page.click(row + ' button:has-text("Terminate")');
    await p.page.click(row + ' button:has-text("Cancel")');
    assert.equal((await rest(srv, 'GET', '/v1/queries')).queries.length, 1);
    await p.page.click(row + ' button:has-text("Terminate")');
    await p.page.click(row + ' button:has-text("Confirm")');
    await p.page.waitForSelector(row, { state: 'detached' });
    assert.deepEqual((await rest(srv, 'GET', '/v1/queries')).queries, []);
    await p.check();
    await p.ctx.close();
  });

  test('clients: listed and disconnected', async () => {
    const c = await Client.connect(srv.mqttPort, 'dash-client');
    let closed = false;
    c.sock.on('close', () => { closed = true; });
    const p = await openPage(browser, srv);
    await p.page.goto(srv.base + '/#/clients');
    await p.page.waitForSelector('tr[data-client=dash-client]');
    await p.shot('clients');
    await p.page.click('tr[data-client=dash-client] button:has-text("Disconnect")');
    await p.page.click('tr[data-client=dash-client] button:has-text("Confirm")');
    await eventually('the client to be disconnected', () => closed, 5000);
    await p.check();
    await p.ctx.close();
  });

  test('every view at 390 px: no overflow, no errors', async () => {
    await rest(srv, 'POST', '/v1/query', { sql: 'CREATE STREAM narrow AS SELECT _payload AS p FROM weather' });
    const p = await openPage(browser, srv, { width: 390, height: 844 });
    for (const [route, sel] of [['#/streams', 'table.streams'], ['#/streams/sensors', 'dl.facts'], ['#/groups', 'table.groups'],
      ['#/groups/g1?filter=jobs%2F%23', '[data-value=lag]'], ['#/browse/weather', 'ol.records li'], ['#/clients', 'table.clients'], ['#/sql', 'table.queries tr[data-query=narrow]']]) {
      await p.page.goto(srv.base + '/' + route);
      await p.page.waitForSelector(sel);
      await p.shot(route.replace(/[#/?%=]+/g, '_').replace(/^_|_$/g, '') || 'overview');
      await p.check();
    }
    await p.ctx.close();
  });
});

describe('dashboard with API tokens', () => {
  let tsrv;
  before(async () => {
    const cfg = path.join(srv.dir, 'tokens.yaml');
    writeFileSync(cfg, 'http:\n  tokens:\n    - token: "e2e-secret-token"\n      role: admin\n');
    tsrv = await startServer(['--config', cfg]);
  });
  after(async () => { if (tsrv) await tsrv.stop(); });

  test('the page loads without a token, asks for one, then shows data', async () => {
    const p = await openPage(browser, tsrv, { expected: ['/v1/'] });
    await p.page.goto(tsrv.base + '/');
    await p.page.waitForSelector('form.token');
    await p.page.fill('input[aria-label="API token"]', 'e2e-secret-token');
    await p.page.click('button:has-text("Use token")');
    await eventually('the overview with data', async () => (await text(p.page, '[data-card=nodes] .value')) === '1 / 1');
    await p.check();
    await p.ctx.close();
  });
});

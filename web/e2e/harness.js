// Test harness: a real `mqstream serve` on 127.0.0.1 with a temp data dir,
// headless Chromium through playwright-core, and the guards every test
// applies: no page error, no console error, no failed request, every
// request to 127.0.0.1, no horizontal overflow at 390 px.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const shotDir = process.env.WEB_TEST_SHOTS || path.resolve(import.meta.dirname, 'screenshots');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// deadline polls fn until it returns a truthy value or ms pass.
export async function eventually(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + (last ? ': ' + last.message : ''));
    await new Promise((r) => setTimeout(r, 50));
  }
}

// startServer runs the binary in $WEB_TEST_BIN and waits until it is ready.
export async function startServer(extraArgs = []) {
  const bin = process.env.WEB_TEST_BIN;
  if (!bin) throw new Error('WEB_TEST_BIN is not set (scripts/web-test.sh builds it)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mqstream-web-'));
  const [httpPort, mqttPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const args = ['serve', '--http', '127.0.0.1:' + httpPort, '--mqtt', '127.0.0.1:' + mqttPort, '--ws', '127.0.0.1:' + wsPort,
    '--data-dir', path.join(dir, 'data'), ...extraArgs];
  // MQSTREAM_* variables are configuration: the node gets none of the caller's.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MQSTREAM_')));
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const base = 'http://127.0.0.1:' + httpPort;
  try {
    await eventually('the server to be ready', async () => {
      if (proc.exitCode !== null) throw new Error('mqstream exited with ' + proc.exitCode);
      return (await fetch(base + '/readyz')).ok;
    }, 15000);
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(e.message + '\n' + log.slice(-2000));
  }
  return {
    base, mqttPort, dir,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// rest calls the server's API.
export async function rest(srv, method, p, body, token) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(srv.base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(method + ' ' + p + ': ' + res.status + ' ' + text);
  return text ? JSON.parse(text) : null;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

// openPage opens a page with the guards installed; check() throws if any
// guard tripped. Requests the page itself aborts (a view's event stream
// closed on navigation) are not failures.
// expected lists URL parts whose 4xx answers the test provokes on purpose.
export async function openPage(browser, srv, { width = 1280, height = 800, token, expected = [] } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height } });
  if (token) await ctx.addInitScript((t) => sessionStorage.setItem('mqstream-token', t), token);
  const page = await ctx.newPage();
  const problems = [];
  let bytes = 0;
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  const isExpected = (url) => expected.some((e) => url.includes(e));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (m.text().startsWith('Failed to load resource') && isExpected(m.location().url || '')) return;
    problems.push('console error: ' + m.text() + ' at ' + (m.location().url || '?'));
  });
  page.on('requestfailed', (r) => {
    const f = r.failure();
    if (f && f.errorText.includes('ERR_ABORTED')) return;
    problems.push('failed request: ' + r.url() + ' ' + (f && f.errorText));
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.hostname !== '127.0.0.1' && u.protocol !== 'data:') problems.push('request off loopback: ' + r.url());
  });
  page.on('response', async (r) => {
    const len = Number(r.headers()['content-length'] || 0);
    bytes += len;
    if (r.status() >= 400 && !isExpected(r.url())) problems.push('HTTP ' + r.status() + ' ' + r.url());
  });
  return {
    page, ctx,
    bytes: () => bytes,
    async check() {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      if (overflow > 0) problems.push('horizontal overflow of ' + overflow + ' px at width ' + width);
      if (problems.length) throw new Error(problems.join('\n'));
    },
    async shot(name) {
      mkdirSync(shotDir, { recursive: true });
      await page.screenshot({ path: path.join(shotDir, name + '-' + width + 'x' + height + '.png'), fullPage: false });
    },
  };
}

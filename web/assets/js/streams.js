// Streams: the list (GET /v1/streams, 1-minute rates from the SQL
// statistics tables, a sparkline of the append rate since the page
// opened) and a stream's detail (GET /v1/streams/{name}).

import { html, useRef, usePoll, api, enc, fmtNum, fmtBytes, fmtAge, ErrorBox, Sparkline } from './lib.js';

// rates1m reads the 1-minute append and read rates per stream.
async function rates1m(signal) {
  const q = (t) => api('POST', '/v1/query', { sql: 'SELECT stream_name, throughput_1min FROM ' + t }, signal)
    .then((r) => Object.fromEntries(r.rows.map((row) => [row[0], row[1]])), () => ({}));
  const [inR, outR] = await Promise.all([q('append_throughput'), q('read_throughput')]);
  return { inR, outR };
}

function retention(r) {
  const parts = [];
  if (r.max_age) parts.push(r.max_age);
  if (r.max_records) parts.push(fmtNum(r.max_records) + ' records');
  if (r.max_bytes) parts.push(fmtBytes(r.max_bytes));
  return parts.length ? parts.join(', ') : 'unlimited';
}

export function Streams() {
  const spark = useRef({}); // name -> {last: appended, at: ms, rates: []}
  const [data, err] = usePoll(async (s) => {
    const [list, rates] = await Promise.all([api('GET', '/v1/streams', undefined, s), rates1m(s)]);
    const now = Date.now();
    for (const st of list.streams) {
      const sp = spark.current[st.name] || (spark.current[st.name] = { rates: [] });
      const n = st.counters.appended_records;
      if (sp.at && n >= sp.last) sp.rates = sp.rates.concat([(n - sp.last) / ((now - sp.at) / 1000)]).slice(-30);
      sp.last = n; sp.at = now;
    }
    return { list: list.streams, rates };
  }, 2000, []);
  const list = (data && data.list) || [];
  return html`<section>
    <h1>Streams</h1>
    <${ErrorBox} error=${err} />
    ${data && list.length === 0 && html`<p class="empty">No streams yet: publish to a topic a mapping rule stores.</p>`}
    <div class="scroll"><table class="streams">
      <thead><tr><th>Name</th><th class="num">Records</th><th class="num">Bytes</th><th class="num">First</th><th class="num">Next</th>
        <th class="num">In /s (1m)</th><th class="num">Out /s (1m)</th><th>Appends</th><th>Retention</th><th>Last append</th></tr></thead>
      <tbody>${list.map((st) => html`<tr data-stream=${st.name}>
        <td><a href=${'#/streams/' + enc(st.name)}>${st.name}</a></td>
        <td class="num" data-col="records">${st.records}</td>
        <td class="num">${fmtBytes(st.bytes)}</td>
        <td class="num">${st.first_offset}</td>
        <td class="num">${st.next_offset}</td>
        <td class="num">${fmtNum(data.rates.inR[st.name] || 0, 2)}</td>
        <td class="num">${fmtNum(data.rates.outR[st.name] || 0, 2)}</td>
        <td><${Sparkline} values=${(spark.current[st.name] || {}).rates} /></td>
        <td>${retention(st.retention)}</td>
        <td>${fmtAge(st.last_append)}</td></tr>`)}
      </tbody></table></div>
  </section>`;
}

export function StreamDetail({ name }) {
  const [st, err] = usePoll((s) => api('GET', '/v1/streams/' + enc(name), undefined, s), 2000, [name]);
  const rows = st ? [
    ['Records', st.records], ['Bytes', fmtBytes(st.bytes)], ['First offset', st.first_offset], ['Next offset', st.next_offset],
    ['Last offset', st.last_offset === null ? '—' : st.last_offset], ['Last append', fmtAge(st.last_append)],
    ['Created', st.created_at], ['Retention', retention(st.retention)],
    ['Appended since start', fmtNum(st.counters.appended_records) + ' records, ' + fmtBytes(st.counters.appended_bytes)],
    ['Read since start', fmtNum(st.counters.read_records) + ' records, ' + fmtBytes(st.counters.read_bytes)],
  ] : [];
  if (st && st.shard !== undefined) rows.push(['Shard', st.shard], ['Leader', st.leader || '(election)'], ['Replicas', (st.replicas || []).join(', ')]);
  return html`<section>
    <p class="crumbs"><a href="#/streams">Streams</a> /</p>
    <h1>${name}</h1>
    <${ErrorBox} error=${err} />
    <p><a class="button" href=${'#/browse/' + enc(name)}>Browse messages</a></p>
    <dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
  </section>`;
}

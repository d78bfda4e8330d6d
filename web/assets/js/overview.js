// Overview: cards with the figures (live from GET /v1/events; connections
// and subscriptions cover the cluster, the rest this node),
// charts over 15 minutes to 24 hours (GET /v1/history, extended live) and
// the cluster's nodes.

import { html, useState, useEffect, useSSE, usePoll, api, fmtNum, fmtBytes, fmtSecs, ErrorBox } from './lib.js';
import { Chart } from './chart.js';

const ranges = ['15m', '1h', '6h', '24h'];
const keep = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400 };

function Card({ label, value, id }) {
  return html`<div class="card" data-card=${id}><div class="label">${label}</div><div class="value">${value}</div></div>`;
}

export function Overview() {
  const [ov, setOv] = useState(null);
  const [range, setRange] = useState('15m');
  const [hist, setHist] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    const ctl = new AbortController();
    api('GET', '/v1/history?range=' + range, undefined, ctl.signal).then(setHist, (e) => { if (e.name !== 'AbortError') setErr(e); });
    return () => ctl.abort();
  }, [range]);
  useSSE('/v1/events', (ev, d) => {
    if (ev !== 'overview') return;
    if (!performance.getEntriesByName('mq-first-data').length) performance.mark('mq-first-data');
    setOv(d);
    // On the fine range, each event is the newest point: extend the charts.
    if (range !== '15m') return;
    setHist((hs) => {
      if (!hs) return hs;
      const t = Math.floor(Date.parse(d.time) / 1000);
      if (hs.time.length && hs.time[hs.time.length - 1] >= t) return hs;
      const cut = hs.time.length >= keep[range] ? 1 : 0;
      const add = (a, v) => a.slice(cut).concat([v]);
      return Object.assign({}, hs, {
        time: add(hs.time, t), in_per_sec: add(hs.in_per_sec, d.in_per_sec), out_per_sec: add(hs.out_per_sec, d.out_per_sec),
        dropped_per_sec: add(hs.dropped_per_sec, d.dropped_per_sec), append_p99_ms: add(hs.append_p99_ms, d.append_p99_ms),
        group_lag: add(hs.group_lag, d.group_lag),
      });
    });
  });
  const o = ov || {};
  // Some members did not answer: the client figures leave them out.
  const partial = ov && o.client_nodes < o.nodes_alive;
  return html`<section>
    <h1>Overview</h1>
    <${ErrorBox} error=${err} />
    <div class="cards">
      <${Card} id="nodes" label="Nodes" value=${ov ? o.nodes_alive + ' / ' + o.nodes : '—'} />
      <${Card} id="connections" label=${partial ? 'Connections (' + o.client_nodes + ' of ' + o.nodes_alive + ' nodes)' : 'Connections'} value=${fmtNum(o.connections)} />
      <${Card} id="subscriptions" label="Subscriptions" value=${fmtNum(o.subscriptions)} />
      <${Card} id="streams" label="Streams" value=${fmtNum(o.streams)} />
      <${Card} id="groups" label="Groups" value=${fmtNum(o.groups)} />
      <${Card} id="lag" label="Group lag" value=${fmtNum(o.group_lag)} />
      <${Card} id="queries" label="Queries" value=${fmtNum(o.queries)} />
      <${Card} id="in" label="Messages in /s" value=${fmtNum(o.in_per_sec)} />
      <${Card} id="out" label="Messages out /s" value=${fmtNum(o.out_per_sec)} />
      <${Card} id="records" label="Records stored" value=${fmtNum(o.records)} />
      <${Card} id="bytes" label="Bytes stored" value=${ov ? fmtBytes(o.bytes) : '—'} />
    </div>
    <div class="toolbar" role="group" aria-label="Chart range">
      ${ranges.map((r) => html`<button class=${r === range ? 'on' : ''} onClick=${() => setRange(r)}>${r}</button>`)}
    </div>
    ${hist && html`<div class="charts">
      <${Chart} title="Messages per second" series=${['in', 'out', 'dropped']}
        data=${[hist.time, hist.in_per_sec, hist.out_per_sec, hist.dropped_per_sec]} fmt=${fmtNum} span=${keep[range]} />
      <${Chart} title="Append p99 (ms)" series=${['p99 ms']} data=${[hist.time, hist.append_p99_ms]} span=${keep[range]} />
      <${Chart} title="Total group lag (records)" series=${['lag']} data=${[hist.time, hist.group_lag]} fmt=${fmtNum} span=${keep[range]} />
    </div>`}
    <${Nodes} self=${o.node} />
  </section>`;
}

// DiskFree shows the space left on a node's data disk, and of how much;
// '—' for a node that did not answer or whose filesystem reports none.
function DiskFree({ m }) {
  if (m.disk_free_bytes === undefined) return '—';
  const pct = m.disk_total_bytes > 0 ? Math.round((100 * m.disk_free_bytes) / m.disk_total_bytes) : null;
  const title = pct === null ? '' : pct + '% free';
  return html`<span data-bytes=${m.disk_free_bytes} title=${title}>${fmtBytes(m.disk_free_bytes)} <span class="muted">of ${fmtBytes(m.disk_total_bytes)}</span></span>`;
}

// Nodes lists the cluster's members (GET /v1/cluster: any node answers
// for all, each member with its own uptime and disk space when it
// answered in time).
function Nodes({ self }) {
  const [cl, err] = usePoll((s) => api('GET', '/v1/cluster', undefined, s), 5000, []);
  const [node] = usePoll((s) => api('GET', '/v1/node', undefined, s), 5000, []);
  const members = (cl && cl.members) || [];
  const uptime = (m) => (m.uptime_seconds !== undefined ? m.uptime_seconds : node && m.id === node.id ? node.uptime_seconds : undefined);
  return html`<h2>Nodes</h2>
    <${ErrorBox} error=${err} />
    <div class="scroll"><table class="nodes">
      <thead><tr><th>Node</th><th>Status</th><th>Version</th><th>Uptime</th><th>Shards led</th><th>Disk free</th><th>HTTP</th></tr></thead>
      <tbody>${members.map((m) => html`<tr data-node=${m.id}>
        <td>${m.id}${m.id === self ? ' (this node)' : ''}</td>
        <td><span class=${'badge ' + m.status}>${m.status}</span></td>
        <td>${m.version || (node && m.id === node.id ? node.version : '—')}</td>
        <td>${fmtSecs(uptime(m))}</td>
        <td>${m.shards_led === undefined ? '—' : m.shards_led}</td>
        <td data-col="disk_free"><${DiskFree} m=${m} /></td>
        <td>${m.http || '—'}</td></tr>`)}
      </tbody></table></div>`;
}

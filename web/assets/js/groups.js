// Consumer groups: the list with lag in records and seconds and a trend
// badge, and a group's detail: lag chart, members, cursors, seek.

import { html, useState, useRef, usePoll, api, enc, fmtNum, fmtSecs, ErrorBox, Confirm } from './lib.js';
import { Chart } from './chart.js';

const spans = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400 };

const trendText = {
  growing: 'growing', draining: 'draining', stalled: 'stalled', steady: 'steady',
  caught_up: 'caught up', no_members: 'no members',
};

export function Trend({ trend }) {
  if (!trend) return html`<span class="badge">—</span>`;
  return html`<span class=${'badge trend-' + trend} data-trend=${trend}>${trendText[trend] || trend}</span>`;
}

function groupPath(g) {
  return '/v1/groups/' + enc(g.name) + '?filter=' + enc(g.filter);
}

export function Groups() {
  const prev = useRef({}); // key -> {delivered, at}
  const [data, err] = usePoll(async (s) => {
    const r = await api('GET', '/v1/groups', undefined, s);
    const now = Date.now();
    for (const g of r.groups) {
      const k = g.name + '\u0000' + g.filter;
      const p = prev.current[k];
      g.rate = p && g.delivered >= p.delivered ? (g.delivered - p.delivered) / ((now - p.at) / 1000) : null;
      prev.current[k] = { delivered: g.delivered, at: now };
    }
    return r.groups;
  }, 2000, []);
  const list = data || [];
  return html`<section>
    <h1>Consumer groups</h1>
    <${ErrorBox} error=${err} />
    ${data && list.length === 0 && html`<p class="empty">No groups: subscribe to $share/&lt;group&gt;/&lt;filter&gt; or create one over the API.</p>`}
    <div class="scroll"><table class="groups">
      <thead><tr><th>Group</th><th>Filter</th><th class="num">Members</th><th class="num">Lag</th><th class="num">Lag (s)</th>
        <th class="num">In flight</th><th class="num">Redelivered</th><th class="num">Dead-lettered</th><th class="num">Deliveries /s</th><th>Trend</th></tr></thead>
      <tbody>${list.map((g) => html`<tr data-group=${g.name}>
        <td><a href=${'#/groups/' + enc(g.name) + '?filter=' + enc(g.filter)}>${g.name}</a></td>
        <td><code>${g.filter}</code></td>
        <td class="num">${g.members.length}</td>
        <td class="num" data-col="lag">${g.lag}</td>
        <td class="num">${fmtSecs(g.lag_seconds)}</td>
        <td class="num">${g.in_flight}</td>
        <td class="num">${g.redelivered}</td>
        <td class="num">${g.dead_lettered}</td>
        <td class="num">${g.rate === null ? '—' : fmtNum(g.rate)}</td>
        <td><${Trend} trend=${g.trend} /></td></tr>`)}
      </tbody></table></div>
  </section>`;
}

export function GroupDetail({ name, filter }) {
  const [range, setRange] = useState('15m');
  const [g, err, reload] = usePoll((s) => api('GET', groupPath({ name, filter }), undefined, s), 2000, [name, filter]);
  const [hist] = usePoll((s) => api('GET', '/v1/groups/' + enc(name) + '/history?range=' + range + '&filter=' + enc(filter), undefined, s),
    5000, [name, filter, range]);
  const [pos, setPos] = useState('latest');
  const [arg, setArg] = useState('');
  const [seekErr, setSeekErr] = useState(null);
  const [done, setDone] = useState('');
  const seek = async () => {
    setSeekErr(null); setDone('');
    let position = pos;
    if (pos === 'offset' || pos === 'time') position = pos + ':' + arg.trim();
    try {
      await api('POST', '/v1/groups/' + enc(name) + '/seek', { filter, position });
      setDone('Moved to ' + position + '.');
      reload();
    } catch (e) { setSeekErr(e); }
  };
  return html`<section>
    <p class="crumbs"><a href="#/groups">Groups</a> /</p>
    <h1>${name} <small><code>${filter}</code></small></h1>
    <${ErrorBox} error=${err} />
    ${g && html`<div class="cards">
      <div class="card"><div class="label">Lag</div><div class="value" data-value="lag">${g.lag}</div></div>
      <div class="card"><div class="label">Lag (age)</div><div class="value">${fmtSecs(g.lag_seconds)}</div></div>
      <div class="card"><div class="label">In flight</div><div class="value">${g.in_flight}</div></div>
      <div class="card"><div class="label">Acked</div><div class="value">${fmtNum(g.acked)}</div></div>
      <div class="card"><div class="label">Redelivered</div><div class="value">${fmtNum(g.redelivered)}</div></div>
      <div class="card"><div class="label">Trend</div><div class="value"><${Trend} trend=${g.trend} /></div></div>
    </div>`}
    <div class="toolbar" role="group" aria-label="Chart range">
      ${['15m', '1h', '6h', '24h'].map((r) => html`<button class=${r === range ? 'on' : ''} onClick=${() => setRange(r)}>${r}</button>`)}
    </div>
    ${hist && html`<${Chart} title="Lag (records)" series=${['lag']} data=${[hist.time, hist.lag]} fmt=${fmtNum} span=${spans[range]} />`}
    <h2>Members</h2>
    ${g && g.members.length === 0 && html`<p class="empty">No member connected.</p>`}
    <div class="scroll"><table>
      <thead><tr><th>Client</th><th>Node</th><th class="num">In flight</th><th class="num">Window</th><th class="num">Delivered</th><th class="num">Acked</th><th>QoS</th></tr></thead>
      <tbody>${g && g.members.map((m) => html`<tr data-member=${m.client_id}><td>${m.client_id}</td><td data-col="node">${m.node || '—'}</td><td class="num">${m.in_flight}</td>
        <td class="num">${m.window}</td><td class="num">${m.delivered}</td><td class="num">${m.acked}</td><td>${m.qos}</td></tr>`)}</tbody>
    </table></div>
    <h2>Streams</h2>
    <div class="scroll"><table>
      <thead><tr><th>Stream</th><th class="num">Ack floor</th><th class="num">Acked above</th><th class="num">Read position</th><th class="num">Next</th><th class="num">Lag</th></tr></thead>
      <tbody>${g && g.streams.map((c) => html`<tr><td><a href=${'#/streams/' + enc(c.stream)}>${c.stream}</a></td><td class="num">${c.ack_floor}</td>
        <td class="num">${c.acked_above_floor}</td><td class="num">${c.read_position}</td><td class="num">${c.next_offset}</td><td class="num">${c.lag}</td></tr>`)}</tbody>
    </table></div>
    <h2>Seek</h2>
    <div class="form">
      <select aria-label="Position" value=${pos} onChange=${(e) => setPos(e.target.value)}>
        <option value="latest">latest</option><option value="earliest">earliest</option>
        <option value="offset">offset</option><option value="time">time (RFC 3339)</option>
      </select>
      ${(pos === 'offset' || pos === 'time') && html`<input aria-label="Seek to" value=${arg} onInput=${(e) => setArg(e.target.value)}
        placeholder=${pos === 'offset' ? '0' : '2026-01-02T15:04:05Z'} />`}
      <${Confirm} label="Seek" question="Records in flight are forgotten. Seek?" onConfirm=${seek} />
    </div>
    <${ErrorBox} error=${seekErr} />
    ${done && html`<p class="ok">${done}</p>`}
  </section>`;
}

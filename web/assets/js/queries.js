// Continuous queries (GET /v1/queries): each with its status, input lag
// and counters, and pause, resume and terminate actions (POST
// /v1/queries/{id}/pause and /resume, DELETE /v1/queries/{id}); terminate
// asks for a confirmation. Shown under the SQL console, which creates them.

import { html, useState, usePoll, api, enc, fmtNum, fmtSecs, fmtAge, ErrorBox, Confirm } from './lib.js';

// terminateQuestion says what terminating q ends: a view goes away, a
// stream's records stay.
function terminateQuestion(q) {
  return 'Terminate ' + q.id + '? ' + (q.kind === 'view' ? 'The view is dropped.' : 'It stops for good; the records in ' + q.sink + ' stay.');
}

// Queries lists the node's continuous queries; reloadKey changes when the
// console ran a statement (which may have created or ended one).
export function Queries({ reloadKey }) {
  const [data, err, reload] = usePoll((s) => api('GET', '/v1/queries', undefined, s), 3000, [reloadKey]);
  const [actErr, setActErr] = useState(null);
  const [busy, setBusy] = useState('');
  const list = (data && data.queries) || [];
  const act = async (id, method, path) => {
    setActErr(null); setBusy(id);
    try {
      await api(method, '/v1/queries/' + enc(id) + path);
    } catch (e) { setActErr(e); }
    setBusy('');
    reload();
  };
  return html`<h2>Continuous queries</h2>
    <p class="hint">A continuous query runs on the node where it was created: these are this node's.</p>
    <${ErrorBox} error=${err || actErr} />
    ${data && list.length === 0 && html`<p class="empty">No continuous queries. The console starts one
      with <code>CREATE STREAM … AS SELECT</code>, <code>INSERT INTO … SELECT</code> or <code>CREATE VIEW … AS SELECT</code>.</p>`}
    ${list.length > 0 && html`<div class="scroll"><table class="queries">
      <thead><tr><th>Query</th><th>Kind</th><th>Status</th><th>Source → sink</th><th class="num">Lag</th><th class="num">Lag (age)</th>
        <th class="num">Records in</th><th class="num">Rows out</th><th>Last emit</th><th></th></tr></thead>
      <tbody>${list.map((q) => html`<tr data-query=${q.id}>
        <td title=${q.sql}>${q.id}</td><td>${q.kind || '—'}</td>
        <td><span class=${'badge q-' + q.status} data-status=${q.status} title=${q.error || ''}>${q.status}</span></td>
        <td>${q.source} → ${q.sink}</td><td class="num" data-col="lag">${fmtNum(q.lag)}</td><td class="num">${fmtSecs(q.lag_seconds)}</td>
        <td class="num">${fmtNum(q.records_in)}</td><td class="num">${fmtNum(q.rows_out)}</td><td>${fmtAge(q.last_emit)}</td>
        <td><div class="actions">${q.kind === 'view' ? null : q.status === 'paused'
          ? html`<button disabled=${busy === q.id} onClick=${() => act(q.id, 'POST', '/resume')}>Resume</button>`
          : html`<button disabled=${busy === q.id} onClick=${() => act(q.id, 'POST', '/pause')}>Pause</button>`}
          <${Confirm} label="Terminate" disabled=${busy === q.id} question=${terminateQuestion(q)}
            onConfirm=${() => act(q.id, 'DELETE', '')} /></div></td>
      </tr>`)}</tbody></table></div>`}`;
}

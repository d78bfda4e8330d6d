// Clients: the MQTT sessions of every node (GET /v1/clients) with a
// disconnect action (DELETE /v1/clients/{id}, on whichever node holds the
// client).

import { html, useState, usePoll, api, enc, fmtAge, ErrorBox, Confirm } from './lib.js';

export function Clients() {
  const [data, err, reload] = usePoll((s) => api('GET', '/v1/clients', undefined, s), 3000, []);
  const [actErr, setActErr] = useState(null);
  const list = (data && data.clients) || [];
  const disconnect = async (id) => {
    setActErr(null);
    try {
      await api('DELETE', '/v1/clients/' + enc(id));
    } catch (e) { setActErr(e); }
    reload();
  };
  return html`<section>
    <h1>Clients</h1>
    <${ErrorBox} error=${err || actErr} />
    ${data && list.length === 0 && html`<p class="empty">No MQTT sessions.</p>`}
    <div class="scroll"><table class="clients">
      <thead><tr><th>Client id</th><th>User</th><th>Address</th><th>MQTT</th><th class="num">Keep-alive</th><th class="num">Subs</th>
        <th class="num">In flight</th><th class="num">Queued</th><th>Node</th><th></th></tr></thead>
      <tbody>${list.map((c) => html`<tr data-client=${c.client_id}>
        <td>${c.client_id}</td><td>${c.username || '—'}</td><td>${c.address || '—'}</td>
        <td>${c.protocol_version === 5 ? '5.0' : c.protocol_version === 4 ? '3.1.1' : c.protocol_version || '—'}</td>
        <td class="num">${c.keep_alive ? c.keep_alive + 's' : '—'}</td><td class="num">${c.subscriptions}</td>
        <td class="num">${c.in_flight}</td><td class="num">${c.queued}</td>
        <td>${c.connected ? c.node : 'away ' + fmtAge(c.disconnected_at) + (c.node ? ' (' + c.node + ')' : '')}</td>
        <td>${c.connected && html`<${Confirm} label="Disconnect" question=${'Disconnect ' + c.client_id + '?'} onConfirm=${() => disconnect(c.client_id)} />`}</td>
      </tr>`)}</tbody></table></div>
  </section>`;
}

// Message browser: a stream's records from an offset, a time or the newest
// N (GET /v1/streams/{name}/records), optionally filtered by a SQL WHERE
// (POST /v1/query, under the engine's row and time budget), a live tail
// (the same endpoint as Server-Sent Events), JSON, text or hex views, and
// a form that writes a test record (POST /v1/streams/{name}/records).

import { html, useState, useEffect, usePoll, useSSE, api, enc, ErrorBox } from './lib.js';

const maxShown = 500;

// bytesOf returns a record's payload as bytes.
function bytesOf(r) {
  if (r.encoding === 'base64') return Uint8Array.from(atob(r.payload), (c) => c.charCodeAt(0));
  const s = r.encoding === 'json' ? JSON.stringify(r.payload) : String(r.payload);
  return new TextEncoder().encode(s);
}

function show(r, view) {
  if (view === 'hex') {
    return Array.from(bytesOf(r).slice(0, 4096), (b) => b.toString(16).padStart(2, '0')).join(' ');
  }
  if (view === 'json') {
    if (r.encoding === 'json') return JSON.stringify(r.payload, null, 2);
    if (r.encoding === 'text') {
      try { return JSON.stringify(JSON.parse(r.payload), null, 2); } catch (e) { return r.payload; }
    }
  }
  if (r.encoding === 'json') return JSON.stringify(r.payload);
  if (r.encoding === 'base64') return '(binary, ' + bytesOf(r).length + ' bytes: use the hex view)';
  return r.payload;
}

// sqlString quotes a stream name as a SQL identifier.
function ident(name) {
  return '`' + name.replace(/`/g, '``') + '`';
}

export function Browser({ name }) {
  const [list] = usePoll((s) => api('GET', '/v1/streams', undefined, s), 0, []);
  const streams = (list && list.streams.map((s) => s.name)) || [];
  const stream = name || streams[0] || '';
  const [mode, setMode] = useState('newest');
  const [arg, setArg] = useState('20');
  const [where, setWhere] = useState('');
  const [view, setView] = useState('text');
  const [recs, setRecs] = useState([]);
  const [next, setNext] = useState(null);
  const [err, setErr] = useState(null);
  const [tail, setTail] = useState(false);
  const [info, setInfo] = useState('');

  const load = async () => {
    if (!stream) return;
    setErr(null); setInfo('');
    try {
      const st = await api('GET', '/v1/streams/' + enc(stream));
      const n = Math.min(Math.max(parseInt(arg, 10) || 20, 1), 1000);
      if (where.trim()) {
        let cond = '(' + where + ')';
        let order = '_offset';
        let limit = 100;
        if (mode === 'offset') cond += ' AND _offset >= ' + (parseInt(arg, 10) || 0);
        else if (mode === 'time') cond += " AND _timestamp >= '" + arg.replace(/'/g, "''") + "'";
        else { order = '_offset DESC'; limit = n; }
        const r = await api('POST', '/v1/query', {
          sql: 'SELECT _offset, _timestamp, _topic, _payload FROM ' + ident(stream) + ' WHERE ' + cond + ' ORDER BY ' + order + ' LIMIT ' + limit,
        });
        const rows = r.rows.map((row) => ({ offset: row[0], timestamp: row[1], topic: row[2], payload: row[3], encoding: 'text' }));
        if (mode === 'newest') rows.reverse();
        setRecs(rows);
        setInfo(rows.length + ' matching records (' + r.rows_scanned + ' scanned)');
        setNext(st.next_offset);
        return;
      }
      let q;
      if (mode === 'offset') q = 'from_offset=' + (parseInt(arg, 10) || 0) + '&limit=100';
      else if (mode === 'time') q = 'from_time=' + enc(arg.trim()) + '&limit=100';
      else q = 'from_offset=' + Math.max(st.first_offset, st.next_offset - n) + '&limit=' + n;
      const r = await api('GET', '/v1/streams/' + enc(stream) + '/records?' + q);
      setRecs(r.records);
      setNext(r.next_offset);
      setInfo(r.records.length + ' records');
    } catch (e) { setErr(e); setRecs([]); }
  };
  useEffect(() => { setTail(false); load(); }, [stream]);

  useSSE(tail && stream && next !== null ? '/v1/streams/' + enc(stream) + '/records?from_offset=' + next : '', (ev, rec) => {
    if (ev !== 'record') return;
    setRecs((rs) => rs.concat([rec]).slice(-maxShown));
  });

  return html`<section>
    <h1>Messages</h1>
    <div class="form">
      <select aria-label="Stream" value=${stream} onChange=${(e) => { location.hash = '#/browse/' + enc(e.target.value); }}>
        ${streams.map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      <select aria-label="Seek by" value=${mode} onChange=${(e) => { setMode(e.target.value); setArg(e.target.value === 'newest' ? '20' : e.target.value === 'offset' ? '0' : new Date(Date.now() - 3600e3).toISOString()); }}>
        <option value="newest">newest N</option><option value="offset">from offset</option><option value="time">from time</option>
      </select>
      <input aria-label="Seek value" class="arg" value=${arg} onInput=${(e) => setArg(e.target.value)} />
      <input aria-label="Where" class="where" value=${where} placeholder="WHERE (SQL), e.g. temp > 30" onInput=${(e) => setWhere(e.target.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter') load(); }} />
      <button class="primary" onClick=${load} disabled=${!stream}>Go</button>
      <label class="check"><input type="checkbox" checked=${tail} onChange=${(e) => setTail(e.target.checked)} disabled=${!stream} /> Live tail</label>
      <select aria-label="View" value=${view} onChange=${(e) => setView(e.target.value)}>
        <option value="text">text</option><option value="json">JSON</option><option value="hex">hex</option>
      </select>
    </div>
    <${ErrorBox} error=${err} />
    ${info && html`<p class="meta">${info}${tail ? ' · following' : ''}</p>`}
    ${!stream && list && html`<p class="empty">No streams yet.</p>`}
    <ol class="records">${recs.map((r) => html`<li data-offset=${r.offset}>
      <div class="rhead"><b>#${r.offset}</b> <span>${r.timestamp}</span> <code>${r.topic}</code></div>
      <pre>${show(r, view)}</pre></li>`)}
    </ol>
    ${stream && html`<${Publish} stream=${stream} />`}
  </section>`;
}

// Publish writes one test record into the stream.
function Publish({ stream }) {
  const [topic, setTopic] = useState(stream);
  const [payload, setPayload] = useState('{"test": true}');
  const [res, setRes] = useState('');
  const [err, setErr] = useState(null);
  useEffect(() => setTopic(stream), [stream]);
  const send = async () => {
    setErr(null); setRes('');
    let body;
    try { body = JSON.parse(payload); } catch (e) { body = payload; }
    try {
      const r = await api('POST', '/v1/streams/' + enc(stream) + '/records', { topic, payload: body });
      setRes('Stored at offset ' + r.first_offset + '.');
    } catch (e) { setErr(e); }
  };
  return html`<h2>Write a test message</h2>
    <div class="form">
      <input aria-label="Topic" value=${topic} onInput=${(e) => setTopic(e.target.value)} />
      <input aria-label="Payload" class="where" value=${payload} onInput=${(e) => setPayload(e.target.value)} />
      <button onClick=${send}>Write</button>
    </div>
    <${ErrorBox} error=${err} />
    ${res && html`<p class="ok">${res}</p>`}`;
}

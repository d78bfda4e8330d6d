// SQL console: POST /v1/query, a table of the result, EXPLAIN of the
// statement (its plan as step and detail rows), the error with its
// position marked in the statement, a history kept in the browser, and the
// continuous queries with their actions (queries.js).

import { html, useState, api, ErrorBox } from './lib.js';
import { Queries } from './queries.js';

const historyKey = 'mqstream-sql-history';
const example = 'SELECT streams.name, sum(append_throughput.throughput_1min) AS total_throughput\n' +
  'FROM append_throughput LEFT JOIN streams ON streams.name = append_throughput.stream_name\n' +
  'GROUP BY stream_name ORDER BY total_throughput DESC LIMIT 0, 5';

// tables are the statistics tables the hint names.
const tables = ['streams', 'groups', 'consumers', 'sessions', 'append_throughput', 'read_throughput', 'append_latency', 'nodes', 'shards'];

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(historyKey) || '[]');
  } catch (e) {
    return [];
  }
}

function cell(v) {
  if (v === null || v === undefined) return html`<span class="null">NULL</span>`;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// ErrorAt shows the statement's line with a caret under the column.
function ErrorAt({ sql, error }) {
  if (!error.line) return null;
  const line = sql.split('\n')[error.line - 1] || '';
  const caret = ' '.repeat(Math.max(0, error.column - 1)) + '^';
  return html`<pre class="errpos" data-line=${error.line} data-column=${error.column}>${'line ' + error.line + ', column ' + error.column + ':\n' + line + '\n' + caret}</pre>`;
}

// explainOf is the EXPLAIN statement of text (text itself if it is one).
function explainOf(text) {
  return /^explain\b/i.test(text) ? text : 'EXPLAIN ' + text;
}

export function SQL() {
  const [sql, setSQL] = useState(() => loadHistory()[0] || example);
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  // sent is the statement the result or error is of (EXPLAIN adds a
  // prefix: error positions count in it); plan marks an EXPLAIN result.
  const [sent, setSent] = useState({ sql: '', plan: false });
  const [busy, setBusy] = useState(false);
  const [hist, setHist] = useState(loadHistory);
  const [runs, setRuns] = useState(0); // reloads the queries after a statement
  const run = async (explain) => {
    const text = sql.trim();
    if (!text) return;
    const stmt = explain ? explainOf(text) : text;
    setBusy(true); setErr(null); setSent({ sql: stmt, plan: !!explain });
    try {
      setRes(await api('POST', '/v1/query', { sql: stmt }));
    } catch (e) {
      setRes(null); setErr(e);
    }
    setBusy(false);
    setRuns((n) => n + 1);
    const next = [text].concat(hist.filter((h) => h !== text)).slice(0, 30);
    setHist(next);
    localStorage.setItem(historyKey, JSON.stringify(next));
  };
  const onKey = (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(false); }
  };
  return html`<section>
    <h1>SQL</h1>
    <p class="hint">Streams are tables; so are ${tables.map((t, i) => html`${i > 0 ? ', ' : ''}<code>${t}</code>`)}.
      ${' '}<code>${'DESCRIBE <table>'}</code> lists columns. Ctrl+Enter runs; Explain shows the plan without running it.</p>
    <textarea class="sql" aria-label="SQL statement" rows="6" spellcheck="false" value=${sql}
      onInput=${(e) => setSQL(e.target.value)} onKeyDown=${onKey}></textarea>
    <div class="form">
      <button class="primary" onClick=${() => run(false)} disabled=${busy}>${busy ? 'Running…' : 'Run'}</button>
      <button onClick=${() => run(true)} disabled=${busy}>Explain</button>
      ${hist.length > 0 && html`<select aria-label="History" onChange=${(e) => { if (e.target.value !== '') setSQL(hist[+e.target.value]); e.target.value = ''; }}>
        <option value="">History (${hist.length})</option>
        ${hist.map((hq, i) => html`<option value=${i}>${hq.length > 80 ? hq.slice(0, 80) + '…' : hq}</option>`)}
      </select>`}
    </div>
    ${err && html`<div class="sqlerr"><${ErrorBox} error=${err} /><${ErrorAt} sql=${sent.sql} error=${err} /></div>`}
    ${res && sent.plan && html`<h2>Plan</h2>`}
    ${res && (res.warnings || []).map((w) => html`<p class="meta warning" role="status">Warning: ${w}</p>`)}
    ${res && html`<p class="meta" data-rows=${res.rows.length}>${res.rows.length} rows · ${res.rows_scanned} scanned · ${res.elapsed_ms.toFixed(1)} ms</p>
      <div class="scroll"><table class=${sent.plan ? 'result plan' : 'result'}>
        <thead><tr>${res.columns.map((c) => html`<th>${c.name}</th>`)}</tr></thead>
        <tbody>${res.rows.map((r) => html`<tr>${r.map((v) => html`<td>${cell(v)}</td>`)}</tr>`)}</tbody>
      </table></div>`}
    <${Queries} reloadKey=${runs} />
  </section>`;
}

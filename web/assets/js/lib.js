// Shared helpers of the dashboard: rendering (Preact + htm from the
// vendored UMD builds), the /v1 client with the API token, Server-Sent
// Events over fetch (so the token can go in a header), polling and
// formatting.

const { h, render } = window.preact;
const hooks = window.preactHooks;
export const { useState, useEffect, useRef, useMemo, useCallback } = hooks;
export const html = window.htm.bind(h);
export { render };

const tokenKey = 'mqstream-token';

export function getToken() {
  return sessionStorage.getItem(tokenKey) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(tokenKey, t);
  else sessionStorage.removeItem(tokenKey);
}

function headers(extra) {
  const hd = Object.assign({}, extra || {});
  const t = getToken();
  if (t) hd.Authorization = 'Bearer ' + t;
  return hd;
}

// ApiError carries the API's error shape: code, message and, for SQL,
// line and column.
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || 'HTTP ' + status);
    this.status = status;
    this.code = e.code || '';
    this.line = e.line || 0;
    this.column = e.column || 0;
  }
}

// api calls /v1 and returns the decoded JSON (null for 204). On 401 it
// tells the app to ask for a token.
export async function api(method, path, body, signal) {
  const opts = { method, headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}), signal };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const res = await fetch(path, opts);
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    if (res.ok) throw e;
  }
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new Event('mq-unauthorized'));
    throw new ApiError(res.status, data);
  }
  return data;
}

// sse reads Server-Sent Events from path and calls onEvent(event, data
// as parsed JSON, id) for each, until signal aborts. It resolves when the
// stream ends and rejects on HTTP errors.
export async function sse(path, onEvent, signal) {
  const res = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new Event('mq-unauthorized'));
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    throw new ApiError(res.status, body);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message', data = '', id = '';
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const k = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (k === 'event') event = v;
        else if (k === 'data') data += (data ? '\n' : '') + v;
        else if (k === 'id') id = v;
      }
      if (data) onEvent(event, JSON.parse(data), id);
    }
  }
}

// useSSE follows path while the component is mounted (and path unchanged),
// reconnecting after errors.
export function useSSE(path, onEvent) {
  const cb = useRef(onEvent);
  cb.current = onEvent;
  useEffect(() => {
    if (!path) return undefined;
    const ctl = new AbortController();
    let stopped = false;
    (async () => {
      while (!stopped) {
        try {
          await sse(path, (e, d, id) => cb.current(e, d, id), ctl.signal);
        } catch (e) {
          if (stopped) return;
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => { stopped = true; ctl.abort(); };
  }, [path]);
}

// usePoll calls fn now and every ms milliseconds while mounted (and while
// deps are unchanged); it returns [data, error, reload].
export function usePoll(fn, ms, deps) {
  const [state, setState] = useState({ data: null, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const ctl = new AbortController();
    const run = async () => {
      try {
        const data = await fn(ctl.signal);
        if (!stopped) setState({ data, error: null });
      } catch (e) {
        if (!stopped && e.name !== 'AbortError') setState((s) => ({ data: s.data, error: e }));
      }
      if (!stopped && ms > 0) timer = setTimeout(run, ms);
    };
    run();
    return () => { stopped = true; clearTimeout(timer); ctl.abort(); };
  }, [...(deps || []), tick]);
  return [state.data, state.error, () => setTick((t) => t + 1)];
}

const units = ['', 'k', 'M', 'G', 'T'];

// fmtNum shows big numbers with a unit (12.3k) and small ones as they are.
export function fmtNum(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  if (Math.abs(n) < 10000) return Number.isInteger(n) ? String(n) : n.toFixed(digits === undefined ? 1 : digits);
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(1) + units[i];
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
}

// fmtSecs shows a duration in seconds as 3s, 4m 10s, 2h 5m or 3d 4h.
export function fmtSecs(s) {
  if (s === null || s === undefined) return '—';
  if (s < 10) return (Math.round(s * 10) / 10) + 's';
  s = Math.round(s);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

// fmtAge shows how long ago an RFC 3339 time was ('—' for none).
export function fmtAge(t) {
  if (!t || t.startsWith('0001-')) return '—';
  return fmtSecs(Math.max(0, (Date.now() - Date.parse(t)) / 1000)) + ' ago';
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.message || String(error)}</div>`;
}

// Confirm shows a button that asks again before it acts.
export function Confirm({ label, question, onConfirm, disabled, cls }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return html`<button class=${cls || 'danger'} disabled=${disabled} onClick=${() => setAsking(true)}>${label}</button>`;
  }
  return html`<span class="confirm">${question}
    <button class="danger" onClick=${() => { setAsking(false); onConfirm(); }}>Confirm</button>
    <button onClick=${() => setAsking(false)}>Cancel</button></span>`;
}

// Sparkline draws values as a small SVG line (no axes).
export function Sparkline({ values, width, height }) {
  const w = width || 80, hgt = height || 20;
  const vs = (values || []).filter((v) => v !== null && v !== undefined);
  if (vs.length < 2) return html`<svg class="spark" width=${w} height=${hgt} aria-hidden="true"></svg>`;
  const mx = Math.max(...vs, 1e-9);
  const step = w / (vs.length - 1);
  const pts = vs.map((v, i) => (i * step).toFixed(1) + ',' + (hgt - 1 - (v / mx) * (hgt - 2)).toFixed(1)).join(' ');
  return html`<svg class="spark" width=${w} height=${hgt} viewBox="0 0 ${w} ${hgt}" aria-hidden="true"><polyline points=${pts} /></svg>`;
}

export function enc(s) {
  return encodeURIComponent(s);
}

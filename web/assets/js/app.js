// The dashboard's shell: navigation, hash routes and the API token prompt.
//
// Routes: #/ (overview), #/streams, #/streams/<name>, #/groups,
// #/groups/<name>?filter=<filter>, #/browse[/<stream>], #/clients, #/sql.

import { html, render, useState, useEffect, getToken, setToken } from './lib.js';
import { Overview } from './overview.js';
import { Streams, StreamDetail } from './streams.js';
import { Groups, GroupDetail } from './groups.js';
import { SQL } from './sql.js';
import { Browser } from './browser.js';
import { Clients } from './clients.js';

const nav = [
  ['#/', 'Overview'], ['#/streams', 'Streams'], ['#/groups', 'Groups'], ['#/browse', 'Messages'],
  ['#/clients', 'Clients'], ['#/sql', 'SQL'],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || '') };
}

function route({ parts, params }) {
  switch (parts[0]) {
    case 'streams':
      return parts[1] ? html`<${StreamDetail} key=${parts[1]} name=${parts[1]} />` : html`<${Streams} />`;
    case 'groups':
      return parts[1] ? html`<${GroupDetail} key=${parts[1]} name=${parts[1]} filter=${params.get('filter') || ''} />` : html`<${Groups} />`;
    case 'browse':
      return html`<${Browser} key=${parts[1] || ''} name=${parts[1] || ''} />`;
    case 'clients':
      return html`<${Clients} />`;
    case 'sql':
      return html`<${SQL} />`;
    default:
      return html`<${Overview} />`;
  }
}

function TokenPrompt({ onDone }) {
  const [value, setValue] = useState('');
  const submit = (e) => {
    e.preventDefault();
    setToken(value.trim());
    onDone();
  };
  return html`<form class="token" onSubmit=${submit}>
    <h1>API token</h1>
    <p>This node requires an API token (<code>http.tokens</code>). It is kept in this browser tab only.</p>
    <input type="password" aria-label="API token" autocomplete="off" value=${value} onInput=${(e) => setValue(e.target.value)} />
    <button class="primary" type="submit">Use token</button>
  </form>`;
}

function App() {
  const [loc, setLoc] = useState(parseHash);
  const [needToken, setNeedToken] = useState(false);
  const [gen, setGen] = useState(0); // remounts the view after a new token
  useEffect(() => {
    const onHash = () => setLoc(parseHash());
    const onAuth = () => setNeedToken(true);
    window.addEventListener('hashchange', onHash);
    window.addEventListener('mq-unauthorized', onAuth);
    return () => {
      window.removeEventListener('hashchange', onHash);
      window.removeEventListener('mq-unauthorized', onAuth);
    };
  }, []);
  const here = '#/' + (loc.parts[0] || '');
  return html`<header>
      <a class="brand" href="#/">mqstream</a>
      <nav>${nav.map(([href, label]) => html`<a href=${href} class=${here === href ? 'on' : ''}>${label}</a>`)}</nav>
      ${getToken() && html`<button class="link" onClick=${() => { setToken(''); setNeedToken(true); }}>Forget token</button>`}
    </header>
    <main key=${gen}>
      ${needToken ? html`<${TokenPrompt} onDone=${() => { setNeedToken(false); setGen((g) => g + 1); }} />` : route(loc)}
    </main>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);

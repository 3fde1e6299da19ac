// The Tether admin console: plain DOM, no dependencies, served with the admin API (docs/admin.md).
// Every value from the server is put in the page as text (textContent), never as markup.

const CREDENTIAL_KEY = 'tether-admin-credential';
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== undefined && child !== null) element.append(child instanceof Node ? child : String(child));
  return element;
}

function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children.flat()) element.append(child instanceof Node ? child : String(child));
  return element;
}

class Unauthorized extends Error {}

async function api(path, init = {}) {
  const response = await fetch(`api${path}`, {
    ...init,
    headers: { authorization: `Bearer ${sessionStorage.getItem(CREDENTIAL_KEY) ?? ''}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
  });
  if (response.status === 401) throw new Unauthorized('the credential was refused');
  const body = await response.json();
  if (!response.ok) throw new Error(body.error_description ?? body.error ?? `HTTP ${response.status}`);
  return body;
}

function say(message) {
  $('status').textContent = message;
}

/** Asks with the confirmation dialog; resolves true when confirmed. */
function confirmAction(text, confirmLabel) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirmLabel;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    $('confirm-ok').focus();
  });
}

const stateCell = (state) => h('td', { class: `state-${state}` }, state);
const tokenLink = (id) => h('a', { href: `#/token/${encodeURIComponent(id)}` }, id);
const time = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');
const bindingText = (binding) => (binding.method === 'bearer' ? 'bearer (unbound)' : `${binding.method} ${binding.method === 'mtls' ? 'x5t#S256' : 'jkt'}=${binding.thumbprint}`);

function table(caption, headers, rows, empty = 'none') {
  if (rows.length === 0) return h('p', {}, `${caption}: ${empty}`);
  return h('table', {}, h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, headers.map((header) => h('th', { scope: 'col' }, header)))),
    h('tbody', {}, rows));
}

// --- views ---------------------------------------------------------------------------------------

async function tokensView(view, query) {
  const filters = { client: query.get('client') ?? '', resource: query.get('resource') ?? '', state: query.get('state') ?? '' };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Token filters' },
    h('div', {}, h('label', { for: 'filter-client' }, 'Client'), h('input', { id: 'filter-client', name: 'client', value: filters.client })),
    h('div', {}, h('label', { for: 'filter-resource' }, 'Resource'), h('input', { id: 'filter-resource', name: 'resource', value: filters.resource })),
    h('div', {}, h('label', { for: 'filter-state' }, 'State'),
      h('select', { id: 'filter-state', name: 'state' }, ['', 'active', 'expired', 'revoked'].map((state) => h('option', { value: state, selected: state === filters.state }, state || 'any')))),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) next.set(name, String(value));
    location.hash = `#/tokens?${next}`;
  });
  const params = new URLSearchParams(Object.entries(filters).filter(([, value]) => value));
  const tokens = await api(`/tokens?${params}`);
  view.replaceChildren(h('h2', {}, 'Tokens'), form, table('Tokens', ['Token id', 'Client', 'Resource', 'Scope', 'Binding', 'State', 'Expires'],
    tokens.map((token) => h('tr', {},
      h('td', { class: 'mono' }, tokenLink(token.token_id)), h('td', {}, token.client_id), h('td', {}, token.resource), h('td', {}, token.scope || '-'),
      h('td', {}, token.binding.method), stateCell(token.state), h('td', {}, time(token.expires_at)))), 'no tokens match'));
}

/** The claims of the token as the ledger recorded them (RFC 9068 names). */
function claimsOf(token) {
  const seconds = (iso) => Math.floor(Date.parse(iso) / 1000);
  const cnf = token.binding.method === 'mtls' ? { 'x5t#S256': token.binding.thumbprint } : token.binding.method === 'dpop' ? { jkt: token.binding.thumbprint } : undefined;
  return { sub: token.subject, aud: token.resource, client_id: token.client_id, scope: token.scope, jti: token.token_id, iat: seconds(token.issued_at), exp: seconds(token.expires_at), cnf, act: token.act ?? undefined };
}

/** The exchange lineage as a graph: ancestors (root first) above, the token, descendants by depth below. */
function lineageGraph(detail) {
  const levels = [...detail.ancestors.slice().reverse().map((token) => [token]), [detail]];
  const byDepth = new Map();
  for (const descendant of detail.descendants) byDepth.set(descendant.depth, [...(byDepth.get(descendant.depth) ?? []), descendant]);
  for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) levels.push(byDepth.get(depth));
  const width = 240;
  const height = 58;
  const gapX = 30;
  const gapY = 40;
  const columns = Math.max(...levels.map((level) => level.length));
  const svgWidth = columns * (width + gapX) + gapX;
  const positions = new Map();
  levels.forEach((level, row) => level.forEach((token, column) => {
    const offset = (svgWidth - level.length * (width + gapX) + gapX) / 2;
    positions.set(token.token_id, { x: offset + column * (width + gapX), y: gapY / 2 + row * (height + gapY) });
  }));
  const svg = s('svg', { class: 'lineage', role: 'group', 'aria-label': 'Exchange lineage', width: svgWidth, height: levels.length * (height + gapY), viewBox: `0 0 ${svgWidth} ${levels.length * (height + gapY)}` });
  for (const token of levels.flat()) {
    const from = token.parent_token_id && positions.get(token.parent_token_id);
    const to = positions.get(token.token_id);
    if (from) svg.append(s('line', { x1: from.x + width / 2, y1: from.y + height, x2: to.x + width / 2, y2: to.y }));
  }
  for (const token of levels.flat()) {
    const { x, y } = positions.get(token.token_id);
    const current = token.token_id === detail.token_id;
    const label = `${current ? 'this token' : 'token'} ${token.token_id}: ${token.client_id} for ${token.resource}, ${token.state}`;
    const node = s('a', { href: `#/token/${encodeURIComponent(token.token_id)}`, class: `node node-${token.state}${current ? ' current' : ''}`, 'aria-label': label },
      s('title', {}, label),
      s('rect', { x, y, width, height, rx: 6 }),
      s('text', { x: x + 8, y: y + 17 }, `${token.client_id} → ${token.resource.replace(/^https?:\/\//, '')}`),
      s('text', { x: x + 8, y: y + 33, class: `state-${token.state}` }, token.state),
      s('text', { x: x + 8, y: y + 49 }, `${token.token_id.slice(0, 24)}…`));
    svg.append(node);
  }
  return svg;
}

async function tokenView(view, id) {
  const detail = await api(`/tokens/${encodeURIComponent(id)}`);
  const revoke = detail.state === 'active'
    ? h('button', {
      type: 'button', id: 'revoke',
      onclick: async () => {
        const count = 1 + detail.descendants.filter((token) => token.state === 'active').length;
        if (!(await confirmAction(`Revoke token ${detail.token_id}${count > 1 ? ` and ${count - 1} token(s) exchanged from it` : ''}? This cannot be undone.`, 'Revoke'))) return;
        const revoked = await api('/tokens/revoke', { method: 'POST', body: JSON.stringify({ token_id: detail.token_id, reason: 'revoked from the admin console' }) });
        say(`Revoked ${revoked.length} token(s).`);
        await tokenView(view, id);
      },
    }, 'Revoke…')
    : undefined;
  view.replaceChildren(
    h('h2', {}, 'Token ', h('code', {}, detail.token_id)),
    h('dl', {},
      h('dt', {}, 'State'), h('dd', { id: 'token-state', class: `state-${detail.state}` }, detail.state),
      h('dt', {}, 'Client'), h('dd', {}, detail.client_id),
      h('dt', {}, 'Resource'), h('dd', {}, detail.resource),
      h('dt', {}, 'Format'), h('dd', {}, detail.format),
      h('dt', {}, 'Binding'), h('dd', { class: 'mono' }, bindingText(detail.binding)),
      h('dt', {}, 'Issued'), h('dd', {}, time(detail.issued_at)),
      h('dt', {}, 'Expires'), h('dd', {}, time(detail.expires_at)),
      h('dt', {}, 'Revoked'), h('dd', {}, time(detail.revoked_at)),
      h('dt', {}, 'Last used'), h('dd', {}, time(detail.last_used_at))),
    revoke ?? '',
    h('h3', {}, 'Claims'), h('pre', { 'aria-label': 'Decoded claims' }, JSON.stringify(claimsOf(detail), null, 2)),
    h('h3', {}, 'Lineage'), lineageGraph(detail),
    h('h3', {}, 'Uses reported by APIs'),
    table('Uses', ['Resource', 'Outcome', 'Reason', 'Count', 'First', 'Last'], (detail.uses ?? []).map((use) => h('tr', {},
      h('td', {}, use.resource), h('td', {}, use.outcome), h('td', {}, use.reason ?? '-'), h('td', {}, String(use.count)),
      h('td', {}, time(use.first_at)), h('td', {}, time(use.last_at))))),
    h('h3', {}, 'Events'),
    table('Events', ['Id', 'Time', 'Type', 'Actor', 'Details'], detail.events.map((event) => h('tr', {},
      h('td', {}, event.id), h('td', {}, time(event.occurred_at)), h('td', {}, event.type), h('td', {}, event.actor ?? '-'),
      h('td', { class: 'mono' }, event.details ? JSON.stringify(event.details) : '-')))));
}

async function clientsView(view) {
  const clients = await api('/clients');
  const act = (client, action) => async () => {
    const what = action === 'suspend' ? `Suspend ${client.client_id}? It gets no new tokens and its ${client.active_tokens} live token(s) are revoked.` : `Resume ${client.client_id}? It may obtain tokens again.`;
    if (!(await confirmAction(what, action === 'suspend' ? 'Suspend' : 'Resume'))) return;
    await api(`/clients/${encodeURIComponent(client.client_id)}/${action}`, { method: 'POST', body: JSON.stringify({ reason: `${action}d from the admin console` }) });
    say(`${client.client_id}: ${action}d.`);
    await clientsView(view);
  };
  view.replaceChildren(h('h2', {}, 'Clients'), table('Clients', ['Client', 'Owner', 'Purpose', 'Permitted APIs', 'Live tokens', 'State', ''],
    clients.map((client) => h('tr', {},
      h('td', {}, h('a', { href: `#/tokens?client=${encodeURIComponent(client.client_id)}` }, client.client_id)), h('td', {}, client.owner ?? '-'), h('td', {}, client.purpose ?? '-'),
      h('td', {}, client.resources.join(', ') || '-'), h('td', {}, client.active_tokens), h('td', {}, client.suspended ? 'suspended' : 'active'),
      h('td', {}, client.configured ? h('button', { type: 'button', onclick: act(client, client.suspended ? 'resume' : 'suspend') }, `${client.suspended ? 'Resume' : 'Suspend'} ${client.client_id}…`) : '')))));
}

async function keysView(view) {
  const keys = await api('/keys');
  view.replaceChildren(h('h2', {}, 'Signing keys'), table('Signing keys', ['Kid', 'Alg', 'State', 'Signs from', 'Stops signing', 'Published until'],
    keys.map((key) => h('tr', {}, h('td', { class: 'mono' }, key.kid), h('td', {}, key.alg), h('td', {}, `${key.state}${key.current ? ' (signs now)' : ''}`),
      h('td', {}, time(key.activated_at)), h('td', {}, time(key.retired_at)), h('td', {}, time(key.published_until))))));
}

/** The newest events, then every new one as the server streams it (Server-Sent Events over fetch). */
async function ledgerView(view, _query, signal) {
  const page = await api('/ledger?limit=50');
  const body = h('tbody', {});
  const row = (event) => h('tr', {}, h('td', {}, event.id), h('td', {}, time(event.occurred_at)), h('td', {}, event.type), h('td', {}, event.client_id ?? '-'),
    h('td', { class: 'mono' }, event.token_id ? tokenLink(event.token_id) : '-'), h('td', {}, event.actor ?? '-'));
  for (const event of page.events.slice().reverse()) body.append(row(event));
  view.replaceChildren(h('h2', {}, 'Ledger (live)'), h('table', {}, h('thead', {}, h('tr', {}, ['Id', 'Time', 'Type', 'Client', 'Token', 'Actor'].map((name) => h('th', { scope: 'col' }, name)))), body));
  const response = await fetch(`api/ledger/stream?after=${page.next_cursor}`, { headers: { authorization: `Bearer ${sessionStorage.getItem(CREDENTIAL_KEY)}` }, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
      if (data && /^event: ledger$/m.test(frame)) body.prepend(row(JSON.parse(data)));
    }
  }
}

// --- routing -------------------------------------------------------------------------------------

const routes = [
  [/^#\/tokens$/, (view, query) => tokensView(view, query), 'Tokens'],
  [/^#\/token\/(.+)$/, (view, _query, _signal, id) => tokenView(view, decodeURIComponent(id)), 'Tokens'],
  [/^#\/clients$/, (view) => clientsView(view), 'Clients'],
  [/^#\/keys$/, (view) => keysView(view), 'Keys'],
  [/^#\/ledger$/, (view, query, signal) => ledgerView(view, query, signal), 'Ledger'],
];

let leaving = new AbortController();

async function render() {
  leaving.abort();
  leaving = new AbortController();
  const loggedIn = sessionStorage.getItem(CREDENTIAL_KEY) !== null;
  $('login').hidden = loggedIn;
  $('nav').hidden = !loggedIn;
  $('view').hidden = !loggedIn;
  if (!loggedIn) {
    $('credential').focus();
    return;
  }
  const [path, queryString = ''] = (location.hash || '#/tokens').split('?');
  const route = routes.find(([pattern]) => pattern.test(path)) ?? routes[0];
  for (const link of document.querySelectorAll('nav a')) {
    if (link.textContent === route[2]) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const match = route[0].exec(path) ?? [];
  try {
    await route[1]($('view'), new URLSearchParams(queryString), leaving.signal, match[1]);
  } catch (error) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(CREDENTIAL_KEY);
      $('login-error').textContent = 'The credential was refused: log in again.';
      await render();
      return;
    }
    if (error.name === 'AbortError') return;
    say(`Error: ${error.message}`);
  }
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  sessionStorage.setItem(CREDENTIAL_KEY, $('credential').value.trim());
  $('credential').value = '';
  try {
    await api('/keys');
  } catch {
    sessionStorage.removeItem(CREDENTIAL_KEY);
    $('login-error').textContent = 'The credential was refused.';
    return;
  }
  $('login-error').textContent = '';
  if (!location.hash) location.hash = '#/tokens';
  await render();
  $('main').focus();
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(CREDENTIAL_KEY);
  render();
});

window.addEventListener('hashchange', render);
render();

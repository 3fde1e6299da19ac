import { rawRequest } from '../support/raw_request.js';
import { fetch, type Response } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether } from '../support/tether.js';

// The admin API (src/admin/): who may call it, and what it answers, against a real Tether over TLS.

const ADMIN = 'https://admin.test.example';
const DEV_SECRET = 'dev-credential-for-this-test-0123456789';

function adminTestConfig(): Record<string, unknown> {
  const base = testConfig({
    clients: [
      {
        id: 'admin-mtls', owner: 'team-ops', purpose: 'operators', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=admin-mtls' },
        resources: { [ADMIN]: [], [ORDERS]: ['orders:read'] },
      },
      {
        id: 'admin-dpop', owner: 'team-ops', purpose: 'operators, DPoP', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: 'admin-dpop-secret-0123456789abcdef' },
        resources: { [ADMIN]: [] },
      },
      {
        // An admin client whose tokens are unbound (the resource allows bearer tokens): still refused.
        id: 'admin-bearer', owner: 'team-ops', purpose: 'misconfigured', binding: 'none',
        auth: { method: 'client_secret_post', secret: 'admin-bearer-secret-0123456789abcd' },
        resources: { [ADMIN]: [] },
      },
    ],
  }) as { resources: Record<string, unknown>[]; clients: Record<string, unknown>[] };
  // mtls-client may get tokens for the admin API, but is not an admin client.
  const mtls = base.clients.find((client) => client.id === 'mtls-client')!;
  mtls.resources = { ...(mtls.resources as object), [ADMIN]: [] };
  return {
    ...base,
    resources: [...base.resources, { uri: ADMIN, lifetime: '5m', allowBearer: true }],
    admin: { enabled: true, resource: ADMIN, clients: ['admin-mtls', 'admin-dpop', 'admin-bearer'] },
  };
}

let tether: RunningTether;
let api: string;

beforeAll(async () => {
  tether = await startTestTether({ config: adminTestConfig(), adminDevSecret: DEV_SECRET });
  api = `${tether.issuer}/admin/api`;
});

afterAll(async () => {
  await tether?.close();
});

const devFetch = (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => fetch(`${api}${path}`, {
  method: init.method ?? 'GET',
  headers: { authorization: `Bearer ${DEV_SECRET}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
  body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body),
  dispatcher: tether.dispatcherFor(),
});

async function json(response: Response): Promise<unknown> {
  return JSON.parse(await response.text());
}

async function adminEvents(): Promise<Record<string, unknown>[]> {
  return tether.database.knex('ledger_events').where({ type: 'admin.called' }).orderBy('id') as Promise<Record<string, unknown>[]>;
}

describe('federation in the inventory', () => {
  test('GET /tokens?issuer= lists only tokens issued for that external issuer\'s identities (none here)', async () => {
    const admin = await tether.token({ client: 'admin-mtls', resource: ADMIN });
    const all = await json(await tether.fetchWith(admin)(`${api}/tokens`)) as Record<string, unknown>[];
    expect(all.length).toBeGreaterThan(0);
    expect(all.every((token) => token.external_identity === null)).toBe(true);
    const response = await tether.fetchWith(admin)(`${api}/tokens?issuer=${encodeURIComponent('https://kubernetes.default.svc')}`);
    expect(response.status).toBe(200);
    expect(await json(response)).toEqual([]);
  });
});

describe('who may call the admin API', () => {
  test('an admin client with a certificate-bound token: the token inventory, and an admin.called event naming it', async () => {
    const issued = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
    const admin = await tether.token({ client: 'admin-mtls', resource: ADMIN });
    const response = await tether.fetchWith(admin)(`${api}/tokens?client=mtls-client`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const tokens = await json(response) as Record<string, unknown>[];
    expect(tokens).toEqual([expect.objectContaining({ token_id: issued.claims!.jti, client_id: 'mtls-client', resource: ORDERS, state: 'active', scope: 'orders:read' })]);
    const [event] = (await adminEvents()).slice(-1);
    expect(event).toMatchObject({ client_id: 'admin-mtls', actor: 'admin:admin-mtls' });
    expect(event!.details).toMatchObject({ operation: 'tokens.list', method: 'GET', status: 200, via: 'mtls', input: { client: 'mtls-client' } });
  });

  test('an admin client with a DPoP-bound token', async () => {
    const admin = await tether.token({ client: 'admin-dpop', resource: ADMIN });
    expect(admin.tokenType).toBe('DPoP');
    const response = await tether.fetchWith(admin)(`${api}/clients`);
    expect(response.status).toBe(200);
    const clients = await json(response) as { client_id: string }[];
    expect(clients.map((client) => client.client_id)).toContain('admin-dpop');
    expect((await adminEvents()).at(-1)).toMatchObject({ actor: 'admin:admin-dpop', details: expect.objectContaining({ via: 'dpop', operation: 'clients.list' }) });
  });

  test('the resource-server checks all hold at the admin API: every bad token of the catalogue is refused', async () => {
    const report = await tether.probe({ url: `${api}/keys`, client: 'admin-mtls', resource: ADMIN, otherResource: ORDERS });
    const verdicts = Object.fromEntries(report.results.map((result) => [result.id, result.verdict]));
    expect(report.failed).toBe(0);
    for (const id of ['valid', 'wrong-aud', 'other-resource-aud', 'expired', 'wrong-iss', 'alg-none', 'foreign-key', 'missing-cnf', 'revoked', 'no-certificate', 'cnf-other-certificate']) {
      expect([id, verdicts[id]]).toEqual([id, 'pass']);
    }
  });

  const refusedWith = async (response: Response, error: string | undefined) => {
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="tether-admin"/);
    const body = await response.text();
    expect(JSON.parse(body)).toEqual(error === undefined ? { error: 'invalid_request' } : { error });
  };

  test('no credentials: 401 with a challenge, and nothing about routes', async () => {
    for (const path of ['/tokens', '/no-such-route', '/tokens/../clients']) {
      const response = await fetch(`${api}${path}`, { dispatcher: tether.dispatcherFor() });
      await refusedWith(response, undefined);
    }
  });

  test('two Authorization headers, the dev credential first: 401 invalid_request (node:http would have kept the first)', async () => {
    const url = new URL(`${api}/tokens`);
    for (const authorization of [[`Bearer ${DEV_SECRET}`, 'Bearer not-the-credential'], [`Bearer ${DEV_SECRET}`, `Bearer ${DEV_SECRET}`]]) {
      const answer = await rawRequest({ connectTo: url.origin.replace('localhost', '127.0.0.1'), target: url.pathname, method: 'GET', ca: tether.pki.ca.certificatePem, headers: { host: url.host, authorization } });
      expect([answer.status, answer.body.error]).toEqual([401, 'invalid_request']);
    }
  });

  test('a wrong dev credential, an unbound token, another API\'s token, a non-admin client\'s token: 401 each', async () => {
    await refusedWith(await devFetch('/tokens', { headers: { authorization: `Bearer ${DEV_SECRET}x` } }), 'invalid_token');

    const bearer = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ADMIN, client_id: 'admin-bearer', client_secret: 'admin-bearer-secret-0123456789abcd' }, { dispatcher: tether.dispatcherFor() });
    expect(bearer.status).toBe(200);
    await refusedWith(await fetch(`${api}/tokens`, { headers: { authorization: `Bearer ${String(bearer.body.access_token)}` }, dispatcher: tether.dispatcherFor() }), 'invalid_token');

    const ordersToken = await tether.token({ client: 'admin-mtls', resource: ORDERS, scope: 'orders:read' });
    await refusedWith(await tether.fetchWith(ordersToken)(`${api}/tokens`), 'invalid_token');

    const notAdmin = await tether.token({ client: 'mtls-client', resource: ADMIN });
    await refusedWith(await tether.fetchWith(notAdmin)(`${api}/tokens`), 'invalid_token');

    // Refusals are in the ledger as rejections of the admin route, never as admin calls.
    const rejections = await tether.database.knex('ledger_events').where({ type: 'request.rejected' }).whereRaw("details->>'route' = 'admin'");
    expect(rejections.length).toBeGreaterThanOrEqual(1);
  });

  test('a revoked admin token is refused (the ledger is checked after the verifier)', async () => {
    const admin = await tether.token({ client: 'admin-mtls', resource: ADMIN });
    const call = tether.fetchWith(admin);
    expect((await call(`${api}/keys`)).status).toBe(200);
    await tether.revoke(admin);
    await refusedWith(await call(`${api}/keys`), 'invalid_token');
  });
});

describe('what the admin API answers', () => {
  test('the signing key (for tether probe) only to the dev credential: an admin client gets 404, no credential 401', async () => {
    const admin = await tether.token({ client: 'admin-mtls', resource: ADMIN });
    const asAdmin = await tether.fetchWith(admin)(`${api}/keys/signing`);
    expect(asAdmin.status).toBe(404);
    expect(await json(asAdmin)).toEqual({ error: 'not_found', error_description: 'no such admin operation' });
    expect((await adminEvents()).at(-1)).toMatchObject({ actor: 'admin:admin-mtls', details: expect.objectContaining({ operation: 'keys.signing', status: 404 }) });
    const anonymous = await fetch(`${api}/keys/signing`, { dispatcher: tether.dispatcherFor() });
    expect(anonymous.status).toBe(401);
    expect(await json(anonymous)).toEqual({ error: 'invalid_request' });

    const dev = await devFetch('/keys/signing');
    expect(dev.status).toBe(200);
    const key = await json(dev) as { kid: string; alg: string; private_jwk: Record<string, unknown>; public_jwk: Record<string, unknown> };
    const [published] = (await json(await devFetch('/keys')) as { kid: string; current: boolean }[]).filter((entry) => entry.current);
    expect(key).toMatchObject({ kid: published!.kid, alg: 'ES256', private_jwk: { kid: published!.kid, d: expect.any(String) }, public_jwk: { kid: published!.kid } });
    expect(key.public_jwk).not.toHaveProperty('d');
  });

  test('tokens: show with lineage and events, revoke (recorded with the caller as actor)', async () => {
    const parent = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
    const shown = await devFetch(`/tokens/${parent.claims!.jti}`);
    expect(shown.status).toBe(200);
    expect(await json(shown)).toMatchObject({ token_id: parent.claims!.jti, state: 'active', ancestors: [], descendants: [], events: [expect.objectContaining({ type: 'token.issued' })] });

    const revoked = await devFetch('/tokens/revoke', { method: 'POST', body: { token_id: parent.claims!.jti, reason: 'test' } });
    expect(revoked.status).toBe(200);
    expect(await json(revoked)).toEqual([{ token_id: parent.claims!.jti, client_id: 'mtls-client', resource: ORDERS, cascade_from: null }]);
    expect((await adminEvents()).at(-1)).toMatchObject({ actor: 'admin:dev-credential', details: expect.objectContaining({ operation: 'tokens.revoke', status: 200, via: 'dev-credential' }) });
    const after = await json(await devFetch(`/tokens/${parent.claims!.jti}`)) as { state: string; events: { type: string; actor: string | null }[] };
    expect(after.state).toBe('revoked');
    expect(after.events.at(-1)).toMatchObject({ type: 'token.revoked', actor: 'admin:dev-credential' });
  });

  test('the CLI\'s text output with format=text, and its actor recorded next to the credential', async () => {
    const response = await devFetch('/tokens?format=text&state=revoked', { headers: { 'x-tether-actor': 'cli:alice@laptop' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await response.text()).toMatch(/^TOKEN ID +CLIENT +RESOURCE/);
    expect((await adminEvents()).at(-1)).toMatchObject({ actor: 'admin:dev-credential (cli:alice@laptop)' });
  });

  test('clients: suspend and resume, recorded', async () => {
    const suspended = await devFetch('/clients/dpop-client/suspend', { method: 'POST', body: { reason: 'test' } });
    expect(await json(suspended)).toMatchObject({ client_id: 'dpop-client', suspended: true, changed: true });
    expect(await json(await devFetch('/clients/dpop-client'))).toMatchObject({ client_id: 'dpop-client', suspended: true });
    expect(await json(await devFetch('/clients/dpop-client/resume', { method: 'POST' }))).toMatchObject({ client_id: 'dpop-client', suspended: false, changed: true });
    expect((await devFetch('/clients/nobody')).status).toBe(404);
  });

  test('ledger: a page with a cursor, and a live stream of Server-Sent Events', async () => {
    const page = await json(await devFetch('/ledger?limit=2')) as { events: { id: number }[]; next_cursor: number };
    expect(page.events).toHaveLength(2);
    expect(page.next_cursor).toBe(page.events[1]!.id);
    // A page after a cursor shows settled events only (ledger/inventory_queries.ts eventsAfter): these
    // three were recorded an hour ago, whatever this machine's speed.
    for (let index = 0; index < 3; index += 1) {
      await tether.database.knex.raw(
        "INSERT INTO ledger_events (type, client_id, request_id, instance_id, occurred_at) VALUES ('client.resumed', 'paged-client', ?, 'test', now() - interval '1 hour')",
        [`paged-${index}`],
      );
    }
    const first = await json(await devFetch('/ledger?after=0&limit=2&client=paged-client')) as { events: { id: number; request_id: string }[]; next_cursor: number };
    expect(first.events.map((event) => event.request_id)).toEqual(['paged-0', 'paged-1']);
    expect(first.next_cursor).toBe(first.events[1]!.id);
    const second = await json(await devFetch(`/ledger?after=${first.next_cursor}&limit=2&client=paged-client`)) as { events: { request_id: string }[]; next_cursor: number };
    expect(second.events.map((event) => event.request_id)).toEqual(['paged-2']);
    const before = 0;

    const stream = await devFetch(`/ledger/stream?after=${before}&interval_ms=100&client=paged-client`);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = stream.body!.getReader();
    let text = '';
    const deadline = Date.now() + 10_000;
    while (!text.includes(`id: ${first.events[1]!.id}\n`) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    await reader.cancel();
    expect(text).toContain(`id: ${first.events[0]!.id}\nevent: ledger\ndata: {"id":${first.events[0]!.id},`);
    expect(text).toContain(`id: ${first.events[1]!.id}\n`);
  });

  test('keys, in snake_case', async () => {
    const keys = await json(await devFetch('/keys')) as Record<string, unknown>[];
    expect(keys[0]).toEqual(expect.objectContaining({ kid: expect.any(String), alg: 'ES256', state: 'active', current: true, published_until: null }));
  });

  test('keys rotate and retire: the CLI\'s words, its refusals (400) and an unknown key (404)', async () => {
    const rotated = await devFetch('/keys/rotate', { method: 'POST', body: {} });
    expect(rotated.status).toBe(200);
    const { kid: staged, replaced } = await json(rotated) as { kid: string; replaced: { kid: string }[] };
    const [current] = replaced.map((entry) => entry.kid);
    const refused = await devFetch(`/keys/${current}/retire`, { method: 'POST', body: { format: 'text' } });
    expect(refused.status).toBe(400);
    expect(await json(refused)).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(new RegExp(`^refusing to retire ${current}: it is the key that signs ES256 tokens now\\. ${staged} is staged`)) });
    const unknown = await devFetch('/keys/no-such-kid/retire', { method: 'POST', body: {} });
    expect(unknown.status).toBe(404);
    expect(await json(unknown)).toEqual({ error: 'not_found', error_description: 'no signing key no-such-kid' });
    const retired = await devFetch(`/keys/${staged}/retire`, { method: 'POST', body: {} });
    expect(retired.status).toBe(200);
    expect(await json(retired)).toMatchObject({ kid: staged, retired: true, already_retired: false, was_active: false });
    const unknownInput = await devFetch(`/keys/${staged}/retire`, { method: 'POST', body: { now: 'true' } });
    expect(unknownInput.status).toBe(400);
    expect((await adminEvents()).slice(-5).map((event) => [(event.details as { operation: string }).operation, (event.details as { status: number }).status]))
      .toEqual([['keys.rotate', 200], ['keys.retire', 400], ['keys.retire', 404], ['keys.retire', 200], ['keys.retire', 400]]);
  });

  test('hostile input: unknown or repeated parameters, bad encodings, wrong methods, oversized or non-JSON bodies: 4xx, never 500', async () => {
    const cases: [string, Parameters<typeof devFetch>[1], number][] = [
      ['/tokens?bogus=1', {}, 400],
      ['/tokens?client=a&client=b', {}, 400],
      ['/tokens?state=zombie', {}, 400],
      ['/tokens?limit=-1', {}, 400],
      ['/tokens/%E0%A4%A', {}, 400],
      ['/tokens/revoke', { method: 'POST', body: '[1]' }, 400],
      ['/tokens/revoke', { method: 'POST', body: '{"token_id":' }, 400],
      ['/tokens/revoke', { method: 'POST', body: { token_id: 42 } }, 400],
      ['/tokens/revoke', { method: 'POST', body: { token_id: 'a', client_id: 'b' } }, 400],
      ['/tokens/revoke', { method: 'POST', body: { reason: 'x'.repeat(40_000) } }, 400],
      ['/tokens/revoke', { method: 'GET' }, 404],
      ['/clients', { method: 'POST' }, 405],
      ['/nothing', {}, 404],
      ['/ledger?type=admin.nope', {}, 400],
      ['/ledger/stream?type=admin.nope', {}, 400],
      ['/ledger/stream?after=x', {}, 400],
      ['/ledger/tail?follow=true&lines=-3', {}, 400],
    ];
    for (const [path, init, status] of cases) {
      const response = await devFetch(path, init);
      expect([path, response.status]).toEqual([path, status]);
      expect(Object.keys(await json(response) as object).sort()).toEqual(['error', 'error_description']);
    }
  });
});


// The client against a token endpoint that misbehaves: every bad answer is refused with its own
// code, nothing bad is cached, no bad token reaches the API, and nothing loops or hangs.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createTokenClient, TokenEndpointError, type ClientErrorCode, type TokenClient, type TokenClientOptions } from '../../packages/client/src/index.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import { startHostileServer, type HostileServer, type TokenRequest } from './support/hostile_server.js';

const ORDERS = 'https://orders.hostile.test';
const SECRET = 'hostile-test-secret-0123456789';

let pki: Pki;
let server: HostileServer;
let api: { origin: string; hits: number; close(): Promise<void> };
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  pki = await createEphemeralPki();
  server = await startHostileServer({ tls: pki.server });
  api = await startCountingApi();
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await Promise.all([server?.close(), api?.close()]);
});

beforeEach(() => {
  server.requests.length = 0;
  api.hits = 0;
});

/** An HTTPS endpoint that counts requests and accepts anything: whatever reaches it, the client sent. */
async function startCountingApi() {
  const counting = https.createServer({ cert: pki.server.certificatePem, key: pki.server.privateKeyPem }, (_req, res) => {
    state.hits += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
  const state = {
    origin: `https://localhost:${(counting.address() as AddressInfo).port}`,
    hits: 0,
    close: () => new Promise<void>((resolve) => {
      counting.close(() => resolve());
      counting.closeAllConnections();
    }),
  };
  return state;
}

function client(extra: Partial<TokenClientOptions> = {}, target: HostileServer = server): TokenClient {
  const created = createTokenClient({
    issuer: target.issuer, clientId: 'svc', auth: { method: 'client_secret_basic', secret: SECRET }, binding: { method: 'dpop' },
    tls: { ca: pki.ca.certificatePem }, timeoutMs: 2000, ...extra,
  });
  closers.push(() => created.close());
  return created;
}

async function codeOf(promise: Promise<unknown>): Promise<ClientErrorCode | 'resolved' | 'other'> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return (error as { code?: ClientErrorCode }).code ?? 'other';
  }
}

const scope = (request: TokenRequest) => request.form.get('scope') ?? undefined;

describe.each<[string, (request: TokenRequest, self: HostileServer) => Promise<{ status?: number; headers?: Record<string, string>; body?: Record<string, unknown> | string; streamBytes?: number }>, ClientErrorCode]>([
  ['garbage (HTML) with 200', async () => ({ body: '<html>hello</html>', headers: { 'content-type': 'text/html' } }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a JSON array with 200', async () => ({ body: '[1,2]' }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['500 with a plain text body', async () => ({ status: 500, body: 'Internal Server Error', headers: { 'content-type': 'text/plain' } }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['500 with an OAuth error', async () => ({ status: 500, body: { error: 'server_error' } }), 'ERR_TOKEN_ENDPOINT_REFUSED'],
  ['302 to another place (not followed)', async () => ({ status: 302, headers: { location: 'https://evil.example/token' }, body: '' }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['200 with an error member and no token', async () => ({ body: { error: 'invalid_request' } }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a token for another audience (JWT aud)', async (request, self) => ({ body: { access_token: await self.jwt(request, { aud: 'https://payments.hostile.test' }), token_type: 'DPoP', expires_in: 300, scope: scope(request) } }), 'ERR_TOKEN_AUDIENCE'],
  ['a token whose aud is the resource with a trailing slash', async (request, self) => ({ body: { access_token: await self.jwt(request, { aud: `${ORDERS}/` }), token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_AUDIENCE'],
  ['a token for two audiences', async (request, self) => ({ body: { access_token: await self.jwt(request, { aud: [ORDERS, 'https://payments.hostile.test'] }), token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_AUDIENCE'],
  ['a wider scope in the answer', async (request, self) => ({ body: { access_token: await self.jwt(request), token_type: 'DPoP', expires_in: 300, scope: 'orders:read orders:admin' } }), 'ERR_TOKEN_SCOPE'],
  ['a wider scope in the JWT only', async (request, self) => ({ body: { access_token: await self.jwt(request, { scope: 'orders:read orders:admin' }), token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_SCOPE'],
  ['an opaque token with a wider scope', async () => ({ body: { access_token: 'opaque-1', token_type: 'DPoP', expires_in: 300, scope: 'orders:read orders:admin' } }), 'ERR_TOKEN_SCOPE'],
  ['expires_in 0', async (request, self) => ({ body: { access_token: await self.jwt(request), token_type: 'DPoP', expires_in: 0 } }), 'ERR_TOKEN_EXPIRED'],
  ['an expired JWT with a positive expires_in', async (request, self) => ({ body: { access_token: await self.jwt(request, { exp: Math.floor(Date.now() / 1000) - 10 }), token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_EXPIRED'],
  ['token_type Bearer for a DPoP client (unbound)', async (request, self) => ({ body: { access_token: await self.jwt(request), token_type: 'Bearer', expires_in: 300 } }), 'ERR_TOKEN_BINDING'],
  ['a JWT bound to another key', async (request, self) => ({ body: { access_token: await self.jwt(request, { cnf: { jkt: 'someone-else' } }), token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_BINDING'],
  ['an access_token with CRLF', async () => ({ body: { access_token: 'abc\r\nSet-Cookie: x=1', token_type: 'DPoP', expires_in: 300 } }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a body of 1 MB with content-length', async () => ({ body: JSON.stringify({ access_token: 'a'.repeat(1024 * 1024), token_type: 'DPoP' }) }), 'ERR_TOKEN_RESPONSE_INVALID'],
  ['a body of 8 MB chunked', async () => ({ streamBytes: 8 * 1024 * 1024 }), 'ERR_TOKEN_RESPONSE_INVALID'],
])('the token endpoint answers %s', (_label, answer, code) => {
  test(`→ ${code}; not cached, nothing reaches the API; a good answer afterwards is used`, async () => {
    server.script(answer);
    const svc = client();
    const callOrders = svc.fetchFor({ resource: ORDERS, scopes: ['orders:read'], baseUrl: api.origin });
    expect(await codeOf(svc.getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe(code);
    expect(await codeOf(callOrders(`${api.origin}/orders`))).toBe(code);
    // Refused twice, asked twice: a bad answer is never cached.
    expect(server.requests).toHaveLength(2);
    expect(api.hits).toBe(0);

    server.script(async (request, self) => ({ body: { access_token: await self.jwt(request), token_type: 'DPoP', expires_in: 300, scope: scope(request) } }));
    expect((await callOrders(`${api.origin}/orders`)).status).toBe(200);
    expect(api.hits).toBe(1);
  });
});

test('the error of a refusal is kept; a description with characters RFC 6749 §5.2 forbids is dropped', async () => {
  server.script(async () => ({ status: 400, body: { error: 'invalid_scope', error_description: 'no "quotes" \\ here' } }));
  const error = await client().getToken({ resource: ORDERS, scopes: ['orders:read'] }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(TokenEndpointError);
  expect(error).toMatchObject({ status: 400, error: 'invalid_scope', errorDescription: undefined });
});

test('no expires_in: the token is used by the callers of its one request and never cached', async () => {
  server.script(async () => ({ body: { access_token: `opaque-${server.requests.length}`, token_type: 'DPoP' } }));
  const svc = client();
  const together = await Promise.all(Array.from({ length: 10 }, () => svc.getToken({ resource: ORDERS, scopes: ['orders:read'] })));
  expect(new Set(together.map((token) => token.value))).toEqual(new Set(['opaque-1']));
  expect(together[0]!.expiresAt).toBeUndefined();
  await svc.getToken({ resource: ORDERS, scopes: ['orders:read'] });
  expect(server.requests).toHaveLength(2);
});

test('use_dpop_nonce every time: one retry with the nonce, then the refusal (no loop)', async () => {
  let nonce = 0;
  server.script(async () => ({ status: 400, headers: { 'dpop-nonce': `n-${(nonce += 1)}` }, body: { error: 'use_dpop_nonce' } }));
  const error = await client().getToken({ resource: ORDERS, scopes: ['orders:read'] }).catch((caught: unknown) => caught);
  expect(error).toMatchObject({ error: 'use_dpop_nonce' });
  expect(server.requests.map((request) => request.proof?.nonce)).toEqual([undefined, 'n-1']);
  // Distinct proofs: a retry is a new proof, not the old one resent.
  expect(new Set(server.requests.map((request) => request.proof?.jti)).size).toBe(2);
});

test('use_dpop_nonce without a DPoP-Nonce header: nothing to retry with → refused after one request', async () => {
  server.script(async () => ({ status: 400, body: { error: 'use_dpop_nonce' } }));
  expect(await codeOf(client().getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe('ERR_TOKEN_ENDPOINT_REFUSED');
  expect(server.requests).toHaveLength(1);
});

test('a token endpoint that never answers: ERR_TOKEN_ENDPOINT_UNREACHABLE after timeoutMs; 100 waiting callers share the one request', async () => {
  server.script(async () => ({ stall: true }) as never);
  const svc = client({ timeoutMs: 300 });
  const codes = await Promise.all(Array.from({ length: 100 }, () => codeOf(svc.getToken({ resource: ORDERS, scopes: ['orders:read'] }))));
  expect(new Set(codes)).toEqual(new Set(['ERR_TOKEN_ENDPOINT_UNREACHABLE']));
  expect(server.requests).toHaveLength(1);
});

test('a token endpoint that is not listening: ERR_TOKEN_ENDPOINT_UNREACHABLE', async () => {
  const svc = createTokenClient({
    metadata: { issuer: 'https://localhost:1', token_endpoint: 'https://127.0.0.1:1/token' },
    clientId: 'svc', auth: { method: 'client_secret_basic', secret: SECRET }, binding: { method: 'dpop' },
  });
  closers.push(() => svc.close());
  expect(await codeOf(svc.getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe('ERR_TOKEN_ENDPOINT_UNREACHABLE');
});

test('discovery falls back to OpenID Connect\'s document; a failed discovery is retried at the next call', async () => {
  const oidcOnly = await startHostileServer({ tls: pki.server, discovery: 'openid-configuration' });
  closers.push(() => oidcOnly.close());
  expect((await client({}, oidcOnly).getToken({ resource: ORDERS, scopes: ['orders:read'] })).claims?.aud).toBe(ORDERS);

  const nowhere = createTokenClient({ issuer: 'https://localhost:1', clientId: 'svc', auth: { method: 'client_secret_basic', secret: SECRET }, binding: { method: 'dpop' }, timeoutMs: 500 });
  closers.push(() => nowhere.close());
  expect(await codeOf(nowhere.getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe('ERR_DISCOVERY_FAILED');
  expect(await codeOf(nowhere.getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe('ERR_DISCOVERY_FAILED');
});

test('metadata declaring no support for the client\'s authentication method → ERR_DISCOVERY_FAILED, nothing sent', async () => {
  const svc = client({ auth: { method: 'client_secret_post', secret: SECRET } });
  expect(await codeOf(svc.getToken({ resource: ORDERS, scopes: ['orders:read'] }))).toBe('ERR_DISCOVERY_FAILED');
  expect(server.requests).toHaveLength(0);
});

test('the secret travels only in Authorization (client_secret_basic), never in the body or an error', async () => {
  server.script(async () => ({ status: 401, body: { error: 'invalid_client' } }));
  const error = (await client().getToken({ resource: ORDERS, scopes: ['orders:read'] }).catch((caught: unknown) => caught)) as Error;
  const [request] = server.requests;
  expect(request!.form.has('client_secret')).toBe(false);
  expect(request!.headers.authorization).toBe(`Basic ${Buffer.from(`svc:${SECRET}`).toString('base64')}`);
  expect(JSON.stringify({ ...error, message: error.message })).not.toContain(SECRET);
});

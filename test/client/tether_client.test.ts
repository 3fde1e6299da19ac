// tether-oauth-client against a real Tether (PGlite, or PostgreSQL with DATABASE_URL) and real APIs
// running Tether's verifier: which token reaches which API, how many tokens Tether issued (its
// ledger), and what happens when Tether or an API refuses.
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { fetch as undiciFetch } from 'undici';
import { createTokenClient, isClientError, TokenEndpointError, type FetchFunction, type TokenClient, type TokenClientOptions } from '../../packages/client/src/index.js';
import { createEphemeralPki, issueClientCertificate, type ClientCertificate, type IssuedClientCertificate } from '../../src/keys/dev_pki.js';
import { createRotatingDpopNonce } from '../../src/resource_server/index.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { startTestTether } from '../support/tether.js';
import { startRecordingApi, type RecordingApi } from './support/recording_api.js';

const ORDERS = 'https://orders.client.test';
const PAYMENTS = 'https://payments.client.test';
const REPORTS = 'https://reports.client.test';
const DPOP_SECRET = 'dpop-client-secret-0123456789abcdef';
// Characters RFC 6749 §2.3.1 form-encoding must carry through Basic authentication.
const ODD_SECRET = 'odd: secret+with%25 &=/?#"chars';
const POST_SECRET = 'post-client-secret-0123456789abcdef';

let tether: RunningTether;
let jwtKey: CryptoKey;
let selfSigned: IssuedClientCertificate;
let postClientCertificate: IssuedClientCertificate;
const closers: (() => Promise<unknown>)[] = [];

function config(jwtPublicJwk: Record<string, unknown>, selfSignedJwk: Record<string, unknown>): Record<string, unknown> {
  const client = (id: string, binding: string, auth: Record<string, unknown>, resources: Record<string, string[]>, extra: Record<string, unknown> = {}) => ({
    id, owner: 'team-client', purpose: 'client library tests', binding, auth, resources, ...extra,
  });
  return {
    resources: [
      // orders-svc is the orders API's own service: it may exchange tokens for it (resources[].servedBy).
      { uri: ORDERS, scopes: ['orders:read', 'orders:write'], lifetime: '5m', introspectors: ['orders-rs'], servedBy: ['orders-svc'] },
      // orders:read is declared here too so that an exchange can carry it on (docs/token-exchange.md).
      { uri: PAYMENTS, scopes: ['payments:read', 'payments:charge', 'orders:read'], lifetime: '2m', introspectors: ['payments-rs'] },
      { uri: REPORTS, scopes: ['reports:read'], format: 'opaque' },
    ],
    clients: [
      client('mtls-client', 'mtls', { method: 'tls_client_auth', subjectDn: 'CN=mtls-client' }, {
        [ORDERS]: ['orders:read', 'orders:write'], [PAYMENTS]: ['payments:read'], [REPORTS]: ['reports:read'],
      }),
      client('dpop-client', 'dpop', { method: 'client_secret_basic', secret: DPOP_SECRET }, { [ORDERS]: ['orders:read'], [REPORTS]: ['reports:read'] }),
      client('odd-secret-client', 'dpop', { method: 'client_secret_basic', secret: ODD_SECRET }, { [ORDERS]: ['orders:read'] }),
      client('post-client', 'mtls', { method: 'client_secret_post', secret: POST_SECRET }, { [ORDERS]: ['orders:read'] }),
      client('jwt-client', 'dpop', { method: 'private_key_jwt', jwks: { keys: [jwtPublicJwk] } }, { [ORDERS]: ['orders:read'] }),
      client('self-signed-client', 'mtls', { method: 'self_signed_tls_client_auth', jwks: { keys: [selfSignedJwk] } }, { [ORDERS]: ['orders:read'] }),
      client('orders-svc', 'mtls', { method: 'tls_client_auth', subjectDn: 'CN=orders-svc' }, {}, {
        exchange: { targets: { [PAYMENTS]: ['orders:read'] }, actFor: ['mtls-client'], acceptBoundSubjectTokens: true },
      }),
      client('orders-rs', 'mtls', { method: 'tls_client_auth', subjectDn: 'CN=orders-rs' }, {}),
      client('payments-rs', 'mtls', { method: 'tls_client_auth', subjectDn: 'CN=payments-rs' }, {}),
    ],
  };
}

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  jwtKey = privateKey;
  const scratch = await createEphemeralPki();
  selfSigned = await issueClientCertificate(scratch, 'self-signed-client', { selfSigned: true });
  tether = await startTestTether({ config: config({ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }, selfSigned.jwk as never) });
  postClientCertificate = await issueClientCertificate(tether.pki, 'post-client');
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await tether?.close();
});

/** Tokens Tether issued (its ledger), by client and, optionally, resource. */
async function issuedCount(clientId: string, resource?: string): Promise<number> {
  const rows = await tether.database.knex('issued_tokens').where({ client_id: clientId, ...(resource ? { resource } : {}) }).count<{ count: string | number }[]>('* as count');
  return Number(rows[0]!.count);
}

function certificateOf(clientId: string): ClientCertificate {
  return tether.pki.clients[clientId]!;
}

/** A client of this Tether, closed after the file. */
function clientFor(options: Omit<TokenClientOptions, 'issuer' | 'tls'> & { tls?: TokenClientOptions['tls'] }): TokenClient {
  const client = createTokenClient({ issuer: tether.issuer, ...options, tls: { ca: tether.pki.ca.certificatePem, ...options.tls } });
  closers.push(() => client.close());
  return client;
}

const mtlsClient = (clientId = 'mtls-client', extra: Partial<TokenClientOptions> = {}) => clientFor({
  clientId, auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
  tls: { cert: certificateOf(clientId).certificatePem, key: certificateOf(clientId).privateKeyPem }, ...extra,
});
const dpopClient = (extra: Partial<TokenClientOptions> = {}) => clientFor({
  clientId: 'dpop-client', auth: { method: 'client_secret_basic', secret: DPOP_SECRET }, binding: { method: 'dpop' }, ...extra,
});

/** undici's fetch, recording each request's URL and method. */
function recordingFetch(): { fetch: FetchFunction; requests: { url: string; method: string }[] } {
  const requests: { url: string; method: string }[] = [];
  return {
    requests,
    fetch: (input, init) => {
      requests.push({ url: input, method: init.method ?? 'GET' });
      return undiciFetch(input, init);
    },
  };
}

/** An API for `audience`, checking revocation by introspection as `introspector`. */
async function startApi(audience: string, introspector?: string, extra: Partial<Parameters<typeof startRecordingApi>[0]> = {}): Promise<RecordingApi> {
  const api = await startRecordingApi({
    issuer: tether.issuer, audience, jwks: tether.jwks, tls: tether.pki.server, issuerCa: tether.pki.ca.certificatePem,
    ...(introspector ? {
      revocation: { introspect: { clientAuth: { method: 'tls_client_auth', clientId: introspector }, fetchOptions: { dispatcher: tether.dispatcherFor(introspector) } } },
    } : {}),
    ...extra,
  });
  closers.push(() => api.close());
  return api;
}

describe('certificate-bound tokens (tls_client_auth, RFC 8705), endpoints from discovery', () => {
  let orders: RecordingApi;
  let payments: RecordingApi;
  beforeAll(async () => {
    [orders, payments] = await Promise.all([startApi(ORDERS, 'orders-rs'), startApi(PAYMENTS, 'payments-rs')]);
  });

  test('a token for exactly the resource, bound to the certificate; the second call is a cache hit', async () => {
    const recorded = recordingFetch();
    const client = mtlsClient('mtls-client', { fetch: recorded.fetch });
    const before = await issuedCount('mtls-client');
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    expect(token).toMatchObject({ type: 'Bearer', resource: ORDERS, scopes: ['orders:read'] });
    expect(token.claims).toMatchObject({ aud: ORDERS, client_id: 'mtls-client', cnf: { 'x5t#S256': certificateOf('mtls-client').thumbprint } });
    expect(await client.getToken({ resource: ORDERS, scopes: 'orders:read' })).toBe(token);
    expect(await issuedCount('mtls-client')).toBe(before + 1);
    // Discovery once, then one token request.
    expect(recorded.requests.map((request) => new URL(request.url).pathname)).toEqual(['/.well-known/oauth-authorization-server', '/token']);
  });

  test('100 concurrent callers → one token request, one token in the ledger', async () => {
    const client = mtlsClient();
    const before = await issuedCount('mtls-client', ORDERS);
    const tokens = await Promise.all(Array.from({ length: 100 }, () => client.getToken({ resource: ORDERS, scopes: ['orders:write', 'orders:read'] })));
    expect(new Set(tokens.map((token) => token.value)).size).toBe(1);
    expect(await issuedCount('mtls-client', ORDERS)).toBe(before + 1);
  });

  test('two APIs: each receives only tokens whose aud is itself; scope sets are separate entries', async () => {
    const client = mtlsClient();
    const before = await issuedCount('mtls-client');
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'], baseUrl: orders.origin });
    const writeOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:write', 'orders:read'], baseUrl: orders.origin });
    const writeOrdersAgain = client.fetchFor({ resource: ORDERS, scopes: 'orders:read orders:write', baseUrl: orders.origin });
    const readPayments = client.fetchFor({ resource: PAYMENTS, scopes: ['payments:read'], baseUrl: payments.origin });
    orders.received.length = 0;
    payments.received.length = 0;
    for (let round = 0; round < 3; round += 1) {
      const answers = await Promise.all([
        readOrders(`${orders.origin}/orders`), writeOrders(`${orders.origin}/orders`), writeOrdersAgain(`${orders.origin}/orders`), readPayments(`${payments.origin}/payments`),
      ]);
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200]);
    }
    expect(orders.received).toHaveLength(9);
    expect(payments.received).toHaveLength(3);
    expect(new Set(orders.received.map((request) => request.claims?.aud))).toEqual(new Set([ORDERS]));
    expect(new Set(payments.received.map((request) => request.claims?.aud))).toEqual(new Set([PAYMENTS]));
    // Three entries: orders:read, orders:read+write (twice, same set), payments:read.
    expect(await issuedCount('mtls-client')).toBe(before + 3);
    expect(new Set(orders.received.map((request) => request.claims?.scope))).toEqual(new Set(['orders:read', 'orders:read orders:write']));
  });

  test('a URL outside the API\'s base URL gets no token: ERR_URL_OUTSIDE_API, nothing sent', async () => {
    const client = mtlsClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'], baseUrl: `${orders.origin}/orders/` });
    const seen = payments.received.length;
    await expect(readOrders(`${payments.origin}/orders/1`)).rejects.toMatchObject({ code: 'ERR_URL_OUTSIDE_API' });
    await expect(readOrders(`${orders.origin}/orders/../admin`)).rejects.toMatchObject({ code: 'ERR_URL_OUTSIDE_API' });
    await expect(readOrders(`${orders.origin}/orders-admin`)).rejects.toMatchObject({ code: 'ERR_URL_OUTSIDE_API' });
    expect((await readOrders(`${orders.origin}/orders/1`)).status).toBe(200);
    expect(payments.received.length).toBe(seen);
  });

  test('a scope the client may not have → TokenEndpointError invalid_scope; nothing cached', async () => {
    const client = mtlsClient();
    for (let i = 0; i < 2; i += 1) {
      const error = await client.getToken({ resource: ORDERS, scopes: ['orders:read', 'orders:admin'] }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(TokenEndpointError);
      expect(error).toMatchObject({ status: 400, error: 'invalid_scope', code: 'ERR_TOKEN_ENDPOINT_REFUSED' });
    }
  });

  test('resources are exact strings: a trailing slash or another case is another resource, refused by Tether', async () => {
    const client = mtlsClient();
    await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    for (const resource of [`${ORDERS}/`, ORDERS.toUpperCase(), ORDERS.replace('orders', 'Orders')]) {
      await expect(client.getToken({ resource, scopes: ['orders:read'] })).rejects.toMatchObject({ error: 'invalid_target' });
    }
  });

  test('an opaque token (RFC 8707 resource, no JWT to read): lifetime from expires_in, cached', async () => {
    const client = mtlsClient();
    const before = await issuedCount('mtls-client', REPORTS);
    const token = await client.getToken({ resource: REPORTS, scopes: ['reports:read'] });
    expect(token.claims).toBeUndefined();
    expect(token.expiresAt! - token.obtainedAt).toBeGreaterThan(60_000);
    expect(await client.getToken({ resource: REPORTS, scopes: ['reports:read'] })).toBe(token);
    expect(await issuedCount('mtls-client', REPORTS)).toBe(before + 1);
  });

  test('a revoked token: the API answers 401 invalid_token, the client drops it and succeeds with a new one', async () => {
    const client = mtlsClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    expect((await readOrders(`${orders.origin}/orders`)).status).toBe(200);
    const revoked = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    await (await tether.clientFor('mtls-client')).revoke(revoked.value);
    const before = await issuedCount('mtls-client', ORDERS);
    orders.received.length = 0;
    const answer = await readOrders(`${orders.origin}/orders`);
    expect(answer.status).toBe(200);
    expect(orders.received.map((request) => [request.token === revoked.value, request.status])).toEqual([[true, 401], [false, 200]]);
    expect(await issuedCount('mtls-client', ORDERS)).toBe(before + 1);
    expect((await client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).value).not.toBe(revoked.value);
  });

  test('an API that rejects every token (401 invalid_token twice in a row): two tries per call, the 401 returned, no loop', async () => {
    // Misconfigured: it expects PAYMENTS tokens on a URL the caller believes is the orders API.
    const wrong = await startApi(PAYMENTS);
    const client = mtlsClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    const before = await issuedCount('mtls-client', ORDERS);
    for (let call = 1; call <= 3; call += 1) {
      const answer = await readOrders(`${wrong.origin}/orders`);
      expect(answer.status).toBe(401);
      expect(answer.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
      expect(wrong.received).toHaveLength(2 * call);
      expect(await issuedCount('mtls-client', ORDERS)).toBe(before + 2 * call);
    }
  });

  test('a request body that cannot be sent twice is not retried: the 401 is returned, the token dropped', async () => {
    const client = mtlsClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    await (await tether.clientFor('mtls-client')).revoke(token.value);
    orders.received.length = 0;
    const stream = new ReadableStream({ start: (controller) => { controller.enqueue(new TextEncoder().encode('{}')); controller.close(); } });
    const answer = await readOrders(`${orders.origin}/orders`, { method: 'POST', body: stream, duplex: 'half' } as never);
    expect(answer.status).toBe(401);
    expect(orders.received).toHaveLength(1);
    expect((await client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).value).not.toBe(token.value);
  });

  test('redirects are not followed with a token; Authorization and DPoP cannot be set by the caller', async () => {
    const client = mtlsClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    await expect(readOrders(`${orders.origin}/orders`, { redirect: 'follow' })).rejects.toThrow(TypeError);
    await expect(readOrders(`${orders.origin}/orders`, { headers: { Authorization: 'Bearer mine' } })).rejects.toThrow(TypeError);
  });
});

describe('DPoP-bound tokens (client_secret_basic, RFC 9449)', () => {
  let orders: RecordingApi;
  beforeAll(async () => {
    orders = await startApi(ORDERS, 'orders-rs');
  });

  test('token_type DPoP, cnf.jkt of the client\'s key; every request carries a fresh proof with ath', async () => {
    const client = dpopClient();
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    expect(token.type).toBe('DPoP');
    expect(token.claims).toMatchObject({ aud: ORDERS, cnf: { jkt: expect.any(String) } });
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    orders.received.length = 0;
    for (let i = 0; i < 3; i += 1) expect((await readOrders(`${orders.origin}/orders/7?page=2#x`)).status).toBe(200);
    expect(orders.received.map((request) => request.scheme)).toEqual(['DPoP', 'DPoP', 'DPoP']);
    expect(new Set(orders.received.map((request) => request.proof?.jti)).size).toBe(3);
    expect(orders.received[0]!.proof).toMatchObject({ htm: 'GET', htu: `${orders.origin}/orders/7`, ath: expect.any(String) });
  });

  test('headersFor presents a token to another HTTP client', async () => {
    const client = dpopClient();
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const url = `${orders.origin}/orders`;
    const headers = await client.headersFor(token, { method: 'GET', url });
    expect(Object.keys(headers).sort()).toEqual(['authorization', 'dpop']);
    const answer = await undiciFetch(url, { headers, dispatcher: client.dispatcher });
    expect(answer.status).toBe(200);
  });

  test('the API asks for a DPoP nonce (RFC 9449 §9): one retry with it, then it is remembered', async () => {
    const api = await startApi(ORDERS, undefined, { nonce: createRotatingDpopNonce() });
    const client = dpopClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    expect((await readOrders(`${api.origin}/orders`)).status).toBe(200);
    expect(api.received.map((request) => [request.status, request.proof?.nonce === undefined])).toEqual([[401, true], [200, false]]);
    expect((await readOrders(`${api.origin}/orders`)).status).toBe(200);
    expect(api.received).toHaveLength(3);
  });

  test('an API that asks for a new nonce every time: one retry per call, then its 401 is returned', async () => {
    let served = 0;
    const api = await startApi(ORDERS, undefined, { nonce: { current: () => `nonce-${(served += 1)}`, isValid: () => false } });
    const client = dpopClient();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    const answer = await readOrders(`${api.origin}/orders`);
    expect(answer.status).toBe(401);
    expect(answer.headers.get('www-authenticate')).toMatch(/error="use_dpop_nonce"/);
    expect(api.received).toHaveLength(2);
    expect(api.received[1]!.proof?.nonce).toMatch(/^nonce-/);
  });

  test('Tether requires DPoP nonces at the token endpoint (RFC 9449 §8): one retry, then the nonce is reused', async () => {
    const jwk = { ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), alg: 'ES256', use: 'sig' };
    const strict = await startTestTether({ config: { ...config(jwk, selfSigned.jwk as never), dpop: { requireNonce: true } } });
    closers.push(() => strict.close());
    const recorded = recordingFetch();
    const client = createTokenClient({
      issuer: strict.issuer, clientId: 'dpop-client', auth: { method: 'client_secret_basic', secret: DPOP_SECRET }, binding: { method: 'dpop' },
      tls: { ca: strict.pki.ca.certificatePem }, fetch: recorded.fetch,
    });
    closers.push(() => client.close());
    await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    await client.getToken({ resource: REPORTS, scopes: ['reports:read'] });
    const tokenRequests = recorded.requests.filter((request) => request.url.endsWith('/token'));
    expect(tokenRequests).toHaveLength(3);
  });
});

describe('client authentication methods', () => {
  let orders: RecordingApi;
  beforeAll(async () => {
    orders = await startApi(ORDERS);
  });

  const readOrdersWith = async (client: TokenClient) => {
    const answer = await client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] })(`${orders.origin}/orders`);
    return { status: answer.status, client: orders.received.at(-1)?.claims?.client_id };
  };

  test('client_secret_basic with a secret full of reserved characters (RFC 6749 §2.3.1 encoding)', async () => {
    const client = clientFor({ clientId: 'odd-secret-client', auth: { method: 'client_secret_basic', secret: ODD_SECRET }, binding: { method: 'dpop' } });
    expect(await readOrdersWith(client)).toEqual({ status: 200, client: 'odd-secret-client' });
  });

  test('client_secret_post, certificate-bound tokens', async () => {
    const client = clientFor({
      clientId: 'post-client', auth: { method: 'client_secret_post', secret: POST_SECRET }, binding: { method: 'mtls' },
      tls: { cert: postClientCertificate.certificatePem, key: postClientCertificate.privateKeyPem },
    });
    expect(await readOrdersWith(client)).toEqual({ status: 200, client: 'post-client' });
  });

  test('private_key_jwt: a fresh assertion (new jti) for every token request', async () => {
    const client = clientFor({ clientId: 'jwt-client', auth: { method: 'private_key_jwt', key: jwtKey, alg: 'ES256' }, binding: { method: 'dpop' } });
    expect(await readOrdersWith(client)).toEqual({ status: 200, client: 'jwt-client' });
    // Tether refuses a replayed jti: a second token request succeeds only with a new assertion.
    const first = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    client.invalidate(first);
    const second = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    expect(second.value).not.toBe(first.value);
  });

  test('the server grants more than asked (no scope asked, Tether grants the client\'s scopes) → ERR_TOKEN_SCOPE, not cached', async () => {
    const client = dpopClient();
    for (let i = 0; i < 2; i += 1) {
      await expect(client.getToken({ resource: ORDERS, scopes: [] })).rejects.toMatchObject({ code: 'ERR_TOKEN_SCOPE' });
    }
  });

  test('self_signed_tls_client_auth: the registered self-signed certificate authenticates and binds', async () => {
    const client = clientFor({
      clientId: 'self-signed-client', auth: { method: 'self_signed_tls_client_auth' }, binding: { method: 'mtls' },
      tls: { cert: selfSigned.certificatePem, key: selfSigned.privateKeyPem },
    });
    expect(await readOrdersWith(client)).toEqual({ status: 200, client: 'self-signed-client' });
    expect(orders.received.at(-1)!.claims!.cnf).toEqual({ 'x5t#S256': selfSigned.thumbprint });
  });

  test('client_assertion: an assertion made elsewhere (the extension point for federated authentication)', async () => {
    const contexts: unknown[] = [];
    const client = clientFor({
      clientId: 'jwt-client',
      auth: {
        method: 'client_assertion',
        assertion: (context) => {
          contexts.push(context);
          return new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer(context.clientId).setSubject(context.clientId)
            .setAudience(context.issuer).setJti(randomUUID()).setIssuedAt().setExpirationTime('1m').sign(jwtKey);
        },
      },
      binding: { method: 'dpop' },
    });
    expect(await readOrdersWith(client)).toEqual({ status: 200, client: 'jwt-client' });
    expect(contexts).toEqual([{ clientId: 'jwt-client', issuer: tether.issuer, tokenEndpoint: `${tether.issuer}/token`, now: expect.any(Number) }]);
  });

  test('a wrong secret → TokenEndpointError invalid_client, and the message names no secret', async () => {
    const client = clientFor({ clientId: 'dpop-client', auth: { method: 'client_secret_basic', secret: 'wrong-secret-0123456789abcdef' }, binding: { method: 'dpop' } });
    const error = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] }).catch((caught: unknown) => caught as Error);
    expect(error).toMatchObject({ status: 401, error: 'invalid_client' });
    expect(String((error as Error).message)).not.toContain('wrong-secret');
  });

  test('options are checked when the client is created', () => {
    const base = { issuer: tether.issuer, clientId: 'x', auth: { method: 'tls_client_auth' as const }, binding: { method: 'mtls' as const } };
    expect(() => createTokenClient(base)).toThrow(/tls.cert and tls.key/);
    expect(() => createTokenClient({ ...base, metadata: { issuer: tether.issuer, token_endpoint: `${tether.issuer}/token` } })).toThrow(/exactly one of issuer and metadata/);
    expect(() => createTokenClient({ ...base, clientId: '' })).toThrow(TypeError);
    expect(() => createTokenClient({ ...base, auth: { method: 'private_key_jwt', key: jwtKey, alg: 'HS256' } })).toThrow(/asymmetric/);
    expect(() => createTokenClient({ ...base, auth: { method: 'client_secret_basic', secret: '' } })).toThrow(TypeError);
  });
});

describe('token exchange (RFC 8693): exchange instead of forwarding', () => {
  let payments: RecordingApi;
  let caller: TokenClient;
  let service: TokenClient;
  beforeAll(async () => {
    payments = await startApi(PAYMENTS, 'payments-rs');
    caller = mtlsClient('mtls-client');
    service = mtlsClient('orders-svc');
  });

  test('the exchanged token is for the next API, bound to the service\'s own certificate, with act; cached per subject token', async () => {
    const received = await caller.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const before = await issuedCount('orders-svc', PAYMENTS);
    const exchanged = await service.exchange(received.value, { resource: PAYMENTS, scopes: ['orders:read'] });
    expect(exchanged.claims).toMatchObject({
      aud: PAYMENTS, sub: 'mtls-client', client_id: 'orders-svc', act: { sub: 'orders-svc' }, cnf: { 'x5t#S256': certificateOf('orders-svc').thumbprint },
    });
    expect(exchanged.expiresAt!).toBeLessThanOrEqual((received.claims!.exp as number) * 1000);
    expect(await service.exchange(received.value, { resource: PAYMENTS, scopes: 'orders:read' })).toBe(exchanged);
    expect(await issuedCount('orders-svc', PAYMENTS)).toBe(before + 1);

    // Another received token is another entry: never the first caller's exchanged token.
    const other = await mtlsClient('mtls-client').getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const otherExchanged = await service.exchange(other.value, { resource: PAYMENTS, scopes: ['orders:read'] });
    expect(otherExchanged.value).not.toBe(exchanged.value);
    expect(await issuedCount('orders-svc', PAYMENTS)).toBe(before + 2);
  });

  test('never outlives the received token: a subject expiring first bounds the cached entry', async () => {
    const received = await mtlsClient('mtls-client').getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const soon = Date.now() + 45_000;
    const exchanged = await service.exchange(received.value, { resource: PAYMENTS, scopes: ['orders:read'], subjectTokenExpiresAt: soon });
    expect(exchanged.expiresAt).toBe(soon);
    await expect(service.exchange(received.value, { resource: PAYMENTS, scopes: ['orders:read'], subjectTokenExpiresAt: Date.now() - 1 }))
      .rejects.toMatchObject({ code: 'ERR_SUBJECT_TOKEN_EXPIRED' });
  });

  test('the next API receives only exchanged tokens, never the received one', async () => {
    const received = await mtlsClient('mtls-client').getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const callPayments = service.fetchExchanged(received.value, { resource: PAYMENTS, scopes: ['orders:read'], baseUrl: payments.origin });
    payments.received.length = 0;
    expect((await callPayments(`${payments.origin}/charges`)).status).toBe(200);
    expect((await callPayments(`${payments.origin}/charges`)).status).toBe(200);
    expect(payments.received.every((request) => request.token !== received.value && request.claims?.aud === PAYMENTS && request.claims?.client_id === 'orders-svc')).toBe(true);
  });

  test('the received token revoked: the exchanged one is rejected, dropped, and exchanging again fails with invalid_grant', async () => {
    const callerClient = mtlsClient('mtls-client');
    const received = await callerClient.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const callPayments = service.fetchExchanged(received.value, { resource: PAYMENTS, scopes: ['orders:read'] });
    expect((await callPayments(`${payments.origin}/charges`)).status).toBe(200);
    await (await tether.clientFor('mtls-client')).revoke(received.value);
    const error = await callPayments(`${payments.origin}/charges`).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TokenEndpointError);
    expect(error).toMatchObject({ error: 'invalid_grant' });
  });

  test('a scope the received token does not carry → invalid_scope', async () => {
    const received = await caller.getToken({ resource: ORDERS, scopes: ['orders:write'] });
    const error = await service.exchange(received.value, { resource: PAYMENTS, scopes: ['orders:read'] }).catch((caught: unknown) => caught);
    expect(isClientError(error, 'ERR_TOKEN_ENDPOINT_REFUSED')).toBe(true);
    expect(error).toMatchObject({ error: 'invalid_scope' });
  });
});

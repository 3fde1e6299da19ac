// Real tokens through the real endpoints for configured clients, and fetch wrappers that present them.
import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { Readable } from 'node:stream';
import { createDpopKey, TokenEndpointError, type RunningTether } from '../../src/testing/index.js';
import { startTestTether } from '../support/tether.js';
import { startEchoServer, type EchoServer } from './echo_server.js';
import { INVOICES, LEGACY, ORDERS, REPORTS, harnessConfig } from './harness_config.js';

let tether: RunningTether;
let api: EchoServer;

beforeAll(async () => {
  tether = await startTestTether({ config: harnessConfig() });
  api = await startEchoServer(tether.pki.server);
});

afterAll(async () => {
  await api?.close();
  await tether?.close();
});

beforeEach(() => {
  api.requests.length = 0;
  api.handle((_request, res) => res.writeHead(200).end('{}'));
});

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

describe('tether.token (client_credentials through the token endpoint)', () => {
  test('a tls_client_auth client: its PKI certificate authenticates and binds the token', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    expect(token).toMatchObject({ tokenType: 'Bearer', scope: 'orders:read', credentials: { clientId: 'worker' } });
    expect(token.claims).toMatchObject({ aud: ORDERS, client_id: 'worker', cnf: { 'x5t#S256': tether.pki.clients.worker!.thumbprint } });
  });

  test('a DPoP client: bound to a key made for it, or to the one given', async () => {
    const made = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read' });
    expect(made.tokenType).toBe('DPoP');
    expect(made.claims?.cnf).toEqual({ jkt: made.credentials.dpopKey!.thumbprint });
    const dpopKey = await createDpopKey('EdDSA');
    const given = await tether.token({ client: 'dpop-worker', resource: ORDERS, dpopKey });
    expect(given.claims?.cnf).toEqual({ jkt: dpopKey.thumbprint });
  });

  test('a secret-authenticated client with certificate-bound tokens gets a certificate from the harness CA, the same each time', async () => {
    const first = await tether.token({ client: 'secret-mtls', resource: ORDERS });
    const second = await tether.token({ client: 'secret-mtls', resource: ORDERS });
    expect(first.claims?.cnf).toEqual({ 'x5t#S256': first.credentials.certificate!.thumbprint });
    expect(second.claims?.cnf).toEqual(first.claims?.cnf);
  });

  test('bearer (legacy) and opaque tokens', async () => {
    const legacy = await tether.token({ client: 'legacy', resource: LEGACY });
    expect(legacy.claims?.cnf).toBeUndefined();
    const opaque = await tether.token({ client: 'worker', resource: REPORTS });
    expect(opaque.claims).toBeUndefined();
  });

  test('a refusal is a TokenEndpointError with the status and the OAuth error', async () => {
    const refused = tether.token({ client: 'worker', resource: ORDERS, scope: 'payments:charge' });
    await expect(refused).rejects.toBeInstanceOf(TokenEndpointError);
    await expect(refused).rejects.toMatchObject({ status: 400, body: { error: 'invalid_scope' } });
  });

  test('an unknown client is a TypeError naming it', async () => {
    await expect(tether.token({ client: 'nobody', resource: ORDERS })).rejects.toThrow(/no client "nobody"/);
  });
});

describe('tether.exchange and tether.revoke', () => {
  test('exchange: a new token for another API, bound to the exchanging client, act = the caller', async () => {
    const subject = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const exchanged = await tether.exchange({ client: 'orders-api', subjectToken: subject, resource: INVOICES, scope: 'orders:read' });
    expect(exchanged.claims).toMatchObject({
      aud: INVOICES, sub: 'worker', client_id: 'orders-api', act: { sub: 'orders-api' },
      cnf: { 'x5t#S256': tether.pki.clients['orders-api']!.thumbprint },
    });
  });

  test('revoke: the ledger marks the token revoked', async () => {
    const token = await tether.token({ client: 'dpop-worker', resource: ORDERS });
    await tether.revoke(token);
    const row = await tether.database.knex('issued_tokens').where({ token_id: token.claims!.jti }).first();
    expect(row.revoked_at).toBeInstanceOf(Date);
  });
});

describe('tether.fetchWith', () => {
  test('a certificate-bound token: Bearer scheme, the client certificate on the connection', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await tether.fetchWith(token)(`${api.origin}/orders?page=2`);
    expect(response.status).toBe(200);
    expect(api.requests[0]).toMatchObject({
      url: '/orders?page=2',
      headers: { authorization: `Bearer ${token.accessToken}` },
      certificateThumbprint: tether.pki.clients.worker!.thumbprint,
    });
    expect(api.requests[0]!.headers.dpop).toBeUndefined();
  });

  test('a DPoP-bound token: a fresh proof per request, htm/htu (no query) and ath of that request', async () => {
    const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read' });
    const fetchOrders = tether.fetchWith(token);
    await fetchOrders(`${api.origin}/orders?page=2`);
    await fetchOrders(`${api.origin}/orders/7`, { method: 'post', body: '{}' });
    const [first, second] = api.requests.map((request) => ({ header: decodeProtectedHeader(request.headers.dpop as string), claims: decodeJwt(request.headers.dpop as string) }));
    expect(api.requests[0]!.headers.authorization).toBe(`DPoP ${token.accessToken}`);
    expect(first!.header).toMatchObject({ typ: 'dpop+jwt', jwk: token.credentials.dpopKey!.publicJwk });
    expect(first!.claims).toMatchObject({ htm: 'GET', htu: `${api.origin}/orders`, ath: sha256(token.accessToken) });
    expect(second!.claims).toMatchObject({ htm: 'POST', htu: `${api.origin}/orders/7`, ath: sha256(token.accessToken) });
    expect(second!.claims.jti).not.toBe(first!.claims.jti);
  });

  test('use_dpop_nonce: the request is repeated once with the nonce, which later proofs keep using', async () => {
    const token = await tether.token({ client: 'dpop-worker', resource: ORDERS });
    api.handle((request, res) => {
      const nonce = decodeJwt(request.headers.dpop as string).nonce;
      if (nonce === 'n-1') return void res.writeHead(200).end('{}');
      res.writeHead(401, { 'dpop-nonce': 'n-1', 'www-authenticate': 'DPoP error="use_dpop_nonce"' }).end();
    });
    const fetchOrders = tether.fetchWith(token);
    expect((await fetchOrders(`${api.origin}/orders`, { method: 'PUT', body: 'x' })).status).toBe(200);
    expect((await fetchOrders(`${api.origin}/orders`)).status).toBe(200);
    expect(api.requests.map((request) => decodeJwt(request.headers.dpop as string).nonce)).toEqual([undefined, 'n-1', 'n-1']);
    expect(api.requests[1]!.body).toBe('x');
  });

  test('a body that cannot be sent twice is not repeated: the 401 is returned', async () => {
    const token = await tether.token({ client: 'dpop-worker', resource: ORDERS });
    api.handle((_request, res) => res.writeHead(401, { 'dpop-nonce': 'n-2', 'www-authenticate': 'DPoP error="use_dpop_nonce"' }).end());
    const response = await tether.fetchWith(token)(`${api.origin}/orders`, { method: 'POST', body: Readable.from(['x']), duplex: 'half' } as never);
    expect(response.status).toBe(401);
    expect(api.requests).toHaveLength(1);
  });
});

// The orders API example against a real Tether started in-process: good tokens work, and the probe
// finds every check enforced — and names the weakness of each deliberately weakened copy.
import { Agent } from 'undici';
import { createTokenClient, type TokenClient, type TokenClientOptions } from '../../packages/client/src/index.js';
import type { UseReporter } from '../../src/resource_server/index.js';
import { startTether, type ProbeReport, type RunningTether } from '../../src/testing/index.js';
import { ORDERS_RESOURCE as ORDERS, exampleTetherConfig } from './example_config.js';
import { fetchTrusting } from './issuer_fetch.js';
import { createOrdersApi, type Authenticate } from './orders_api.js';
import { createOrdersCaller } from './orders_caller.js';
import { listenOrdersApi } from './server.js';
import { createOrdersUseReporter } from './use_reporting.js';
import { weakenedAuthentication, type Weakness } from './weakened_copies.js';

let tether: RunningTether;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tether = await startTether({ config: exampleTetherConfig() });
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await tether?.close();
});

/** Serves an orders API trusting the harness Tether; returns the URL of `/orders`. */
async function startOrdersApi(authenticate?: Authenticate, useReporter?: UseReporter): Promise<string> {
  const issuerFetch = fetchTrusting(tether.pki.ca.certificatePem);
  const own = tether.pki.clients['orders-api']!;
  const introspectionAgent = new Agent({ connect: { ca: tether.pki.ca.certificatePem, cert: own.certificatePem, key: own.privateKeyPem } });
  const app = createOrdersApi({
    issuer: tether.issuer,
    resource: ORDERS,
    fetch: issuerFetch.fetch,
    introspection: { clientId: 'orders-api', fetchOptions: { dispatcher: introspectionAgent } },
    authenticate,
    useReporter,
  });
  const api = await listenOrdersApi(app, tether.pki.server);
  closers.push(() => api.close(), () => issuerFetch.agent.close(), () => introspectionAgent.close());
  return `${api.origin}/orders`;
}

const failedChecks = (report: ProbeReport) => report.results.filter((result) => result.verdict !== 'pass' && result.verdict !== 'skip').map((result) => result.id);

/** A caller of the orders API using tether-oauth-client, as a worker would (orders_caller.ts). */
function callerClient(clientId: 'orders-worker' | 'reporting-cli'): TokenClient {
  const certificate = tether.pki.clients[clientId];
  const options: TokenClientOptions = clientId === 'orders-worker'
    ? { issuer: tether.issuer, clientId, auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' }, tls: { cert: certificate!.certificatePem, key: certificate!.privateKeyPem, ca: tether.pki.ca.certificatePem } }
    : { issuer: tether.issuer, clientId, auth: { method: 'client_secret_basic', secret: 'example-only-secret-reporting-cli' }, binding: { method: 'dpop' }, tls: { ca: tether.pki.ca.certificatePem } };
  const client = createTokenClient(options);
  closers.push(() => client.close());
  return client;
}

describe('the orders API with good tokens', () => {
  let url: string;
  let baseUrl: string;
  beforeAll(async () => {
    url = await startOrdersApi();
    baseUrl = new URL(url).origin;
  });

  test('a certificate-bound worker reads orders and, with orders:write, places one', async () => {
    const orders = createOrdersCaller(callerClient('orders-worker'), baseUrl);
    expect(await orders.listOrders()).toEqual({ status: 200, body: { orders: [{ id: 1, item: 'tea', placedBy: 'seed' }] } });
    expect(await orders.placeOrder('coffee')).toEqual({ status: 201, body: { id: 2, item: 'coffee', placedBy: 'orders-worker' } });
  });

  test('a DPoP-bound caller: each request carries a fresh proof, so repeating a request works', async () => {
    const client = callerClient('reporting-cli');
    expect((await client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).type).toBe('DPoP');
    const orders = createOrdersCaller(client, baseUrl);
    expect((await orders.listOrders()).status).toBe(200);
    expect((await orders.listOrders()).status).toBe(200);
  });

  test('a revoked token is refused at once (the API introspects)', async () => {
    const token = await tether.token({ client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
    await tether.revoke(token);
    const response = await tether.fetchWith(token)(url);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  });

  test('the worker whose cached token was revoked: the API refuses it, the client gets a new one, the call succeeds', async () => {
    const client = callerClient('orders-worker');
    const orders = createOrdersCaller(client, baseUrl);
    expect((await orders.listOrders()).status).toBe(200);
    const cached = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    await (await tether.clientFor('orders-worker')).revoke(cached.value);
    expect((await orders.listOrders()).status).toBe(200);
    expect((await client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).value).not.toBe(cached.value);
  });
});

describe('the orders API reports its use to Tether', () => {
  test('a worker\'s calls and a refused token reach use_events through the reporter (orders-api\'s own bound token, the endpoint discovered)', async () => {
    const own = tether.pki.clients['orders-api']!;
    const ownClient = createTokenClient({
      issuer: tether.issuer, clientId: 'orders-api', auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
      tls: { cert: own.certificatePem, key: own.privateKeyPem, ca: tether.pki.ca.certificatePem },
    });
    closers.push(() => ownClient.close());
    const reporter = createOrdersUseReporter({ issuer: tether.issuer, client: ownClient, flushIntervalMs: 3_600_000 });
    const url = await startOrdersApi(undefined, reporter);
    const client = callerClient('orders-worker');
    const orders = createOrdersCaller(client, new URL(url).origin);
    expect((await orders.listOrders()).status).toBe(200);
    expect((await orders.listOrders()).status).toBe(200);
    const expired = await tether.token({ client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
    await tether.revoke(expired);
    expect((await tether.fetchWith(expired)(url)).status).toBe(401);
    await reporter.close();
    expect(reporter.stats()).toMatchObject({ sent: 3, dropped: 0, failedBatches: 0 });

    const worker = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    const rows = await tether.database.knex('use_events').select('outcome', 'reason', 'token_id', 'client_id', 'count', 'reporter_client_id', 'token_state');
    expect(rows.map(({ outcome, reason, client_id: clientId, count, reporter_client_id: reporter, token_state: state }) => [outcome, reason, clientId, count, reporter, state]).sort()).toEqual([
      ['accepted', null, 'orders-worker', 2, 'orders-api', 'active'],
      ['refused', 'revoked', 'orders-worker', 1, 'orders-api', 'revoked'],
    ]);
    expect(rows.find((row) => row.outcome === 'accepted')!.token_id).toBe(JSON.parse(Buffer.from(worker.value.split('.')[1]!, 'base64url').toString()).jti);
  });
});

describe('tether.probe against the orders API', () => {
  let url: string;
  beforeAll(async () => {
    url = await startOrdersApi();
  });

  test('certificate-bound tokens (orders-worker): every check passes, none is skipped', async () => {
    const report = await tether.probe({ url, client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
    expect(failedChecks(report)).toEqual([]);
    expect(report).toMatchObject({ ok: true, skipped: 0 });
    expect(report.results.map((result) => result.id)).toEqual([
      'valid', 'wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key',
      'unknown-kid', 'foreign-key', 'missing-cnf', 'cnf-other-certificate', 'no-certificate', 'scope-missing', 'revoked',
    ]);
  });

  test('DPoP-bound tokens (reporting-cli): every check passes, including the proof checks', async () => {
    const report = await tether.probe({ url, client: 'reporting-cli', resource: ORDERS, scope: 'orders:read' });
    expect(failedChecks(report)).toEqual([]);
    expect(report.results.map((result) => result.id)).toEqual(expect.arrayContaining([
      'cnf-other-key', 'dpop-as-bearer', 'proof-wrong-htm', 'proof-wrong-htu', 'proof-wrong-ath', 'proof-replayed',
    ]));
    expect(report.skipped).toBe(0);
  });

  test('a POST operation needing orders:write is probed the same way', async () => {
    const report = await tether.probe({
      url, method: 'POST', body: '{"item":"probe"}', headers: { 'content-type': 'application/json' },
      client: 'orders-worker', resource: ORDERS, scope: 'orders:write',
    });
    expect(failedChecks(report)).toEqual([]);
  });
});

describe('tether.probe against deliberately weakened copies', () => {
  test.each<[Weakness, string[]]>([
    ['no-audience-check', ['wrong-aud', 'other-resource-aud']],
    ['no-binding-check', ['missing-cnf', 'cnf-other-certificate', 'no-certificate']],
    ['accepts-expired', ['expired']],
  ])('%s: the probe fails exactly %j', async (weakness, expected) => {
    const url = await startOrdersApi(weakenedAuthentication(weakness, { issuer: tether.issuer, resource: ORDERS, jwks: tether.jwks as never }));
    const report = await tether.probe({ url, client: 'orders-worker', resource: ORDERS, scope: 'orders:read', skip: ['revoked'] });
    expect(report.ok).toBe(false);
    expect(failedChecks(report)).toEqual(expected);
    for (const id of expected) expect(report.results.find((result) => result.id === id)).toMatchObject({ verdict: 'fail', answered: '200', note: 'ACCEPTED' });
  });
});

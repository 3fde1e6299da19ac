import { randomBytes } from 'node:crypto';
import { fetch, type Agent } from 'undici';
import { parseConfig } from '../../src/config/load_config.js';
import { TOKEN_EXCHANGE_GRANT_TYPE as TOKEN_EXCHANGE_GRANT } from '../../src/oauth/token_exchange_urns.js';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, LEGACY, ORDERS, REPORTS, UNKNOWN, testConfig } from '../support/config.js';
import { INVOICES, LedgerClient, ORDERS as LEDGER_ORDERS, ledgerConfig } from '../ledger/ledger_config.js';
import { rawRequest } from '../support/raw_request.js';
import { basicAuth, postForm, startTestTether } from '../support/tether.js';
import { scrape, seriesOf, valueOf, type Sample } from './scrape.js';

/**
 * Prometheus metrics scraped over real HTTP from a listener of their own, while real clients ask for
 * tokens over real TLS: each counter moves by exactly the requests made (docs/operations.md#metrics).
 */

let tether: RunningTether;
let mtls: Agent;
let anonymous: Agent;

beforeAll(async () => {
  tether = await startTestTether({ config: { ...testConfig(), metrics: { listener: { host: '127.0.0.1', port: 0 }, path: '/metrics' } } });
  mtls = tether.dispatcherFor('mtls-client');
  anonymous = tether.dispatcherFor();
});

afterAll(async () => {
  await tether?.close();
});

const ISSUED = 'tether_tokens_issued_total';
const REFUSED = 'tether_token_requests_refused_total';
const PHASE_COUNT = 'tether_issuance_phase_duration_seconds_count';
const CC = 'client_credentials';

const metrics = () => scrape(tether.metricsUrl!);

/** The change of each named sample between two scrapes. */
function delta(before: Sample[], after: Sample[], name: string, labels: Record<string, string>): number {
  return valueOf(after, name, labels) - valueOf(before, name, labels);
}

function total(samples: Sample[], name: string): number {
  return seriesOf(samples, name).reduce((sum, sample) => sum + sample.value, 0);
}

const mtlsToken = (form: Record<string, string | string[]>) =>
  postForm(tether.tokenEndpoint, { grant_type: CC, client_id: 'mtls-client', ...form }, { dispatcher: mtls });

const dpopToken = (proof: string, secret = DPOP_SECRET) =>
  postForm(tether.tokenEndpoint, { grant_type: CC, resource: ORDERS }, { dispatcher: anonymous, headers: { authorization: basicAuth('dpop-client', secret), dpop: proof } });

describe('token counters', () => {
  test('an issued token counts once under its grant, client and resource; nothing is counted as refused', async () => {
    const before = await metrics();
    const response = await mtlsToken({ resource: ORDERS, scope: 'orders:read' });
    expect(response.status).toBe(200);
    const after = await metrics();
    expect(delta(before, after, ISSUED, { grant: CC, client: 'mtls-client', resource: ORDERS })).toBe(1);
    expect(total(after, ISSUED) - total(before, ISSUED)).toBe(1);
    expect(total(after, REFUSED) - total(before, REFUSED)).toBe(0);
  });

  test('three tokens, then a refusal: issued +3, refused +1 with the OAuth error and the requested resource', async () => {
    const before = await metrics();
    for (let i = 0; i < 3; i += 1) expect((await mtlsToken({ resource: REPORTS })).status).toBe(200);
    const refused = await mtlsToken({ resource: ORDERS, scope: 'orders:admin' });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_scope');
    const after = await metrics();
    expect(delta(before, after, ISSUED, { grant: CC, client: 'mtls-client', resource: REPORTS })).toBe(3);
    expect(delta(before, after, REFUSED, { grant: CC, client: 'mtls-client', resource: ORDERS, error: 'invalid_scope' })).toBe(1);
    expect(total(after, REFUSED) - total(before, REFUSED)).toBe(1);
  });

  test('a resource nobody registered is counted as "unknown", two resources as "multiple"', async () => {
    const before = await metrics();
    expect((await mtlsToken({ resource: UNKNOWN })).body.error).toBe('invalid_target');
    expect((await mtlsToken({ resource: `${UNKNOWN}/${randomBytes(8).toString('hex')}` })).body.error).toBe('invalid_target');
    expect((await mtlsToken({ resource: [ORDERS, REPORTS] })).body.error).toBe('invalid_target');
    const after = await metrics();
    expect(delta(before, after, REFUSED, { grant: CC, client: 'mtls-client', resource: 'unknown', error: 'invalid_target' })).toBe(2);
    expect(delta(before, after, REFUSED, { grant: CC, client: 'mtls-client', resource: 'multiple', error: 'invalid_target' })).toBe(1);
    expect(seriesOf(after, REFUSED).some((sample) => sample.labels.resource!.startsWith(UNKNOWN))).toBe(false);
  });

  test('unknown client ids create no series: 40 made-up ids are one "unknown" series, counted 40 times', async () => {
    const before = await metrics();
    for (let i = 0; i < 40; i += 1) {
      const id = `intruder-${randomBytes(6).toString('hex')}`;
      const response = await postForm(tether.tokenEndpoint, { grant_type: CC, resource: ORDERS }, { dispatcher: anonymous, headers: { authorization: basicAuth(id, 'whatever-secret') } });
      expect(response.status).toBe(401);
    }
    const after = await metrics();
    expect(delta(before, after, REFUSED, { grant: CC, client: 'unknown', resource: ORDERS, error: 'invalid_client' })).toBe(40);
    const series = (samples: Sample[]) => seriesOf(samples, REFUSED).length;
    expect(series(after) - series(before)).toBeLessThanOrEqual(1);
    expect(seriesOf(after, REFUSED).every((sample) => !sample.labels.client!.startsWith('intruder-'))).toBe(true);
  });

  test('a registered client with a wrong secret is counted under its id; an unknown grant type as "unknown"', async () => {
    const before = await metrics();
    expect((await dpopToken(await dpopProof(await createDpopKey(), { htm: 'POST', htu: tether.tokenEndpoint }), 'wrong-secret-0123456789')).status).toBe(401);
    const odd = await postForm(tether.tokenEndpoint, { grant_type: 'urn:example:made-up', resource: ORDERS }, { dispatcher: anonymous, headers: { authorization: basicAuth('dpop-client', DPOP_SECRET) } });
    expect(odd.body.error).toBe('unsupported_grant_type');
    const after = await metrics();
    expect(delta(before, after, REFUSED, { grant: CC, client: 'dpop-client', resource: ORDERS, error: 'invalid_client' })).toBe(1);
    expect(delta(before, after, REFUSED, { grant: 'unknown', client: 'dpop-client', resource: ORDERS, error: 'unsupported_grant_type' })).toBe(1);
  });

  test('a token exchange refusal is counted under token_exchange', async () => {
    const before = await metrics();
    const response = await mtlsToken({ grant_type: TOKEN_EXCHANGE_GRANT, resource: ORDERS });
    expect(response.status).toBe(400);
    const after = await metrics();
    expect(delta(before, after, REFUSED, { grant: 'token_exchange', client: 'mtls-client', resource: ORDERS, error: response.body.error as string })).toBe(1);
  });

  test('a replayed DPoP proof: one token, one refusal (invalid_dpop_proof), one replay counted', async () => {
    const proof = await dpopProof(await createDpopKey(), { htm: 'POST', htu: tether.tokenEndpoint });
    const before = await metrics();
    expect((await dpopToken(proof)).status).toBe(200);
    const replay = await dpopToken(proof);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_dpop_proof');
    const after = await metrics();
    expect(delta(before, after, 'tether_dpop_replays_total', {})).toBe(1);
    expect(delta(before, after, ISSUED, { grant: CC, client: 'dpop-client', resource: ORDERS })).toBe(1);
    expect(delta(before, after, REFUSED, { grant: CC, client: 'dpop-client', resource: ORDERS, error: 'invalid_dpop_proof' })).toBe(1);
  });

  test('another invalid DPoP proof is no replay', async () => {
    const before = await metrics();
    expect((await dpopToken(await dpopProof(await createDpopKey(), { htm: 'GET', htu: tether.tokenEndpoint }))).body.error).toBe('invalid_dpop_proof');
    const after = await metrics();
    expect(delta(before, after, 'tether_dpop_replays_total', {})).toBe(0);
  });
});

describe('a configuration reload', () => {
  test('a client added by a reload is counted under its id from then on; before, its id was "unknown"', async () => {
    const secret = 'late-client-secret-0123456789abcdef';
    const lateToken = () => postForm(tether.tokenEndpoint, { grant_type: CC, resource: LEGACY }, { dispatcher: anonymous, headers: { authorization: basicAuth('late-client', secret) } });
    const before = await metrics();
    expect((await lateToken()).status).toBe(401);
    const next = structuredClone(tether.app.configuration().config) as unknown as Record<string, unknown> & { clients: Record<string, unknown>[] };
    next.clients.push({ id: 'late-client', owner: 'team-late', purpose: 'added by a reload', binding: 'none', auth: { method: 'client_secret_basic', secret }, resources: { [LEGACY]: ['legacy:read'] } });
    await tether.app.reconfigure(parseConfig(next));
    expect((await lateToken()).status).toBe(200);
    const after = await metrics();
    expect(delta(before, after, REFUSED, { grant: CC, client: 'unknown', resource: LEGACY, error: 'invalid_client' })).toBe(1);
    expect(delta(before, after, ISSUED, { grant: CC, client: 'late-client', resource: LEGACY })).toBe(1);
  });
});

describe('a database that refuses the issuance', () => {
  test('503 temporarily_unavailable is counted as a refusal, the ledger phase observed, no token counted', async () => {
    const { knex } = tether.database;
    await knex.raw(`CREATE FUNCTION refuse_issuance() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`);
    await knex.raw('CREATE TRIGGER refuse_issuance BEFORE INSERT ON issued_tokens FOR EACH ROW EXECUTE FUNCTION refuse_issuance()');
    try {
      const before = await metrics();
      const response = await mtlsToken({ resource: ORDERS });
      expect(response.status).toBe(503);
      expect(response.body.error).toBe('temporarily_unavailable');
      const after = await metrics();
      expect(delta(before, after, REFUSED, { grant: CC, client: 'mtls-client', resource: ORDERS, error: 'temporarily_unavailable' })).toBe(1);
      expect(total(after, ISSUED) - total(before, ISSUED)).toBe(0);
      expect(delta(before, after, PHASE_COUNT, { grant: CC, phase: 'ledger' })).toBe(1);
      expect(delta(before, after, 'tether_http_request_duration_seconds_count', { route: 'token', status: '503' })).toBe(1);
    } finally {
      await knex.raw('DROP TRIGGER refuse_issuance ON issued_tokens');
      await knex.raw('DROP FUNCTION refuse_issuance()');
    }
    expect((await mtlsToken({ resource: ORDERS })).status).toBe(200);
  });
});

describe('token exchange', () => {
  test('an exchanged token counts under token_exchange, its client and the new resource; its phases are observed', async () => {
    const exchanging = await startTestTether({ config: { ...ledgerConfig(), metrics: { listener: { host: '127.0.0.1', port: 0 } } } });
    try {
      const ledger = new LedgerClient(exchanging);
      const subject = await ledger.accessToken('worker', LEDGER_ORDERS);
      const before = await scrape(exchanging.metricsUrl!);
      await ledger.exchange('orders-api', subject, INVOICES);
      const after = await scrape(exchanging.metricsUrl!);
      expect(delta(before, after, ISSUED, { grant: 'token_exchange', client: 'orders-api', resource: INVOICES })).toBe(1);
      expect(total(after, ISSUED) - total(before, ISSUED)).toBe(1);
      for (const phase of ['policy', 'signing', 'ledger']) expect(delta(before, after, PHASE_COUNT, { grant: 'token_exchange', phase })).toBe(1);
    } finally {
      await exchanging.close();
    }
  });
});

describe('issuance latency by phase', () => {
  test('an issuance observes policy, signing and ledger once each; a policy refusal observes policy only', async () => {
    const phases = ['policy', 'signing', 'ledger'];
    const counts = (samples: Sample[]) => phases.map((phase) => valueOf(samples, PHASE_COUNT, { grant: CC, phase }));
    const before = await metrics();
    expect((await mtlsToken({ resource: ORDERS })).status).toBe(200);
    const issued = await metrics();
    expect(counts(issued).map((count, index) => count - counts(before)[index]!)).toEqual([1, 1, 1]);
    expect((await mtlsToken({ resource: UNKNOWN })).status).toBe(400);
    const refused = await metrics();
    expect(counts(refused).map((count, index) => count - counts(issued)[index]!)).toEqual([1, 0, 0]);
    // The histogram's buckets are cumulative: the +Inf bucket equals the count.
    expect(valueOf(refused, 'tether_issuance_phase_duration_seconds_bucket', { grant: CC, phase: 'ledger', le: '+Inf' })).toBe(valueOf(refused, PHASE_COUNT, { grant: CC, phase: 'ledger' }));
    expect(valueOf(refused, 'tether_issuance_phase_duration_seconds_sum', { grant: CC, phase: 'signing' })).toBeGreaterThan(0);
  });
});

describe('gauges and process metrics', () => {
  test('database pool, issuance queue, active signing key age, process and event loop', async () => {
    const samples = await metrics();
    const pool = Object.fromEntries(seriesOf(samples, 'tether_database_pool_connections').map((sample) => [sample.labels.state, sample.value]));
    expect(Object.keys(pool).sort()).toEqual(['free', 'pending_acquire', 'pending_create', 'used']);
    // Idle between requests: nothing waits for a connection or for an issuance statement.
    expect(pool.pending_acquire).toBe(0);
    expect(pool.free! + pool.used!).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, 'tether_issuance_queue_depth')).toBe(0);
    expect(valueOf(samples, 'tether_issuance_statements_in_flight')).toBe(0);

    const active = tether.app.keys.current().ring.keys.filter((key) => key.state === 'active');
    const ages = seriesOf(samples, 'tether_signing_key_age_seconds');
    expect(ages.map((sample) => sample.labels)).toEqual(active.map((key) => ({ alg: key.alg, kid: key.kid })));
    expect(ages[0]!.value).toBeGreaterThanOrEqual(0);
    expect(ages[0]!.value).toBeLessThan(3600);

    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(seriesOf(samples, name).length).toBeGreaterThan(0);
    }
  });

  test('HTTP request durations by route and status; a scan of made-up paths is one "other" series', async () => {
    const before = await metrics();
    for (let i = 0; i < 5; i += 1) await fetch(`${tether.origin}/${randomBytes(6).toString('hex')}`, { dispatcher: anonymous });
    expect((await fetch(tether.jwksUri, { dispatcher: anonymous })).status).toBe(200);
    const after = await metrics();
    const count = 'tether_http_request_duration_seconds_count';
    expect(delta(before, after, count, { route: 'other', status: '404' })).toBe(5);
    expect(delta(before, after, count, { route: 'jwks', status: '200' })).toBe(1);
  });
});

describe('the metrics listener', () => {
  test('serves only its path: other paths 404, other methods 405; the token listeners do not serve it', async () => {
    const url = new URL(tether.metricsUrl!);
    expect((await fetch(new URL('/token', url))).status).toBe(404);
    const post = await fetch(url, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(url, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${tether.origin}/metrics`, { dispatcher: anonymous })).status).toBe(404);
  });

  test('metrics: listener http serves the path on the HTTP listener only, next to health', async () => {
    const shared = await startTestTether({ config: { ...testConfig(), metrics: { listener: 'http' } }, http: true });
    try {
      expect(shared.metricsUrl).toBe(`${shared.httpOrigin}/metrics`);
      const agent = shared.dispatcherFor('mtls-client');
      expect((await postForm(shared.tokenEndpoint, { grant_type: CC, client_id: 'mtls-client', resource: ORDERS }, { dispatcher: agent })).status).toBe(200);
      const samples = await scrape(shared.metricsUrl!);
      expect(valueOf(samples, ISSUED, { grant: CC, client: 'mtls-client', resource: ORDERS })).toBe(1);
      // Addressed by IP, as a scraper does: no served-origin refusal.
      const byAddress = await rawRequest({ connectTo: shared.httpOrigin!, target: '/metrics', method: 'GET', headers: { host: '10.1.2.3:9999' } });
      expect(byAddress.status).toBe(200);
      expect(String(byAddress.body.raw)).toContain(ISSUED);
      // The token endpoint on the same listener still refuses that Host (RFC 9110 §15.5.20).
      expect((await rawRequest({ connectTo: shared.httpOrigin!, target: '/token', method: 'POST', headers: { host: '10.1.2.3:9999' }, form: { grant_type: CC } })).status).toBe(421);
      expect((await fetch(`${shared.origin}/metrics`, { dispatcher: shared.dispatcherFor() })).status).toBe(404);
    } finally {
      await shared.close();
    }
  });

  test('off by default: no metrics anywhere, no registry', async () => {
    const plain = await startTestTether({ config: testConfig(), http: true });
    try {
      expect(plain.app.metrics).toBeUndefined();
      expect(plain.metricsUrl).toBeUndefined();
      expect((await fetch(`${plain.httpOrigin}/metrics`)).status).toBe(404);
      expect((await fetch(`${plain.origin}/metrics`, { dispatcher: plain.dispatcherFor() })).status).toBe(404);
    } finally {
      await plain.close();
    }
  });
});

describe('metrics configuration', () => {
  const base = { issuer: 'https://auth.example', ...testConfig() };
  test.each([
    ['the http listener when there is none', { listener: 'http' }, /metrics\.listener: metrics on the http listener needs listeners\.http/],
    ['a path Tether serves', { listener: 'https', path: '/token' }, /metrics\.path: \/token is one of Tether's own paths/],
    ['a path under discovery', { listener: 'https', path: '/.well-known/metrics' }, /metrics\.path: .*one of Tether's own paths/],
    ['a relative path', { listener: 'https', path: 'metrics' }, /metrics\.path: expected an absolute path/],
    ['a listener kind that does not exist', { listener: 'admin' }, /metrics\.listener/],
  ])('%s is a configuration error naming the field', (_label, metrics, message) => {
    expect(() => parseConfig({ ...base, listeners: { https: { port: 8443 } }, metrics })).toThrow(message);
  });

  test('defaults: off, /metrics; a listener of its own is a host and port', () => {
    expect(parseConfig({ ...base, listeners: { https: { port: 8443 } } }).metrics).toEqual({ listener: 'off', path: '/metrics' });
    expect(parseConfig({ ...base, listeners: { https: { port: 8443 } }, metrics: { listener: { port: 9464 } } }).metrics)
      .toEqual({ listener: { host: '127.0.0.1', port: 9464 }, path: '/metrics' });
  });
});

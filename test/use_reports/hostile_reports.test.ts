import { randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { dpopProof } from '../../src/testing/dpop.js';
import { fetch, type Response } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import type { IssuedAccessToken } from '../../src/testing/token_client.js';
import { captureLog, type CapturedLog } from '../observability/log_capture.js';
import { PAYMENTS, UNKNOWN } from '../support/config.js';
import { startTestTether } from '../support/tether.js';
import { ORDERS, USE_REPORTS, authorizeWith, useReportEndpointOf, useReportsConfig } from './support.js';

// Reports from callers that should not be believed, and reports that are not what the package
// writes: each gets a precise answer, and nothing of it is written.

let tether: RunningTether;
let log: CapturedLog;
let endpoint: string;
let reporterToken: IssuedAccessToken;

beforeAll(async () => {
  log = captureLog();
  tether = await startTestTether({ config: useReportsConfig(), logger: log.logger });
  endpoint = useReportEndpointOf(tether);
  reporterToken = await tether.token({ client: 'orders-api', resource: USE_REPORTS });
});

afterAll(async () => {
  await tether?.close();
});

const event = (overrides: Record<string, unknown> = {}) => ({
  at: new Date().toISOString(), outcome: 'refused', reason: 'wrong_audience', code: 'ERR_TOKEN_AUDIENCE', token_id: randomUUID(),
  client_id: 'mtls-client', token_audience: PAYMENTS, scopes: 'orders:read', binding: 'mtls', count: 1, ...overrides,
});

/** POSTs `body` (an object, or raw text) with `token`'s credentials (none for null) (certificate on the connection, DPoP proof per request). */
async function post(body: unknown, token: IssuedAccessToken | null = reporterToken, headers: Record<string, string> = {}): Promise<Response> {
  const credentials = token ? await authorizeWith(token)({ method: 'POST', url: endpoint }) : {};
  return fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...credentials, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    dispatcher: tether.dispatcherFor(token?.credentials.certificate ? token.credentials.clientId : undefined),
  });
}

const rowCount = async () => Number((await tether.database.knex('use_events').count({ n: '*' }))[0]!.n);

async function expectAnswer(response: Response, status: number, error: string): Promise<void> {
  const body = await response.json() as { error: string };
  expect([response.status, body.error]).toEqual([status, error]);
}

describe('a report from the API\'s own client', () => {
  test('certificate-bound: 200, the events written with the reporter and resource', async () => {
    const before = await rowCount();
    const response = await post({ resource: ORDERS, events: [event(), event({ outcome: 'accepted', reason: undefined, code: undefined, token_audience: undefined, count: 4 })] });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ events: 2 });
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await rowCount()).toBe(before + 2);
    const [last] = await tether.database.knex('use_events').orderBy('id', 'desc').limit(1);
    expect(last).toMatchObject({ reporter_client_id: 'orders-api', resource: ORDERS, outcome: 'accepted', count: 4 });
  });

  test('DPoP-bound (a client in servedBy): 200', async () => {
    const token = await tether.token({ client: 'orders-api-dpop', resource: USE_REPORTS });
    expect(token.tokenType).toBe('DPoP');
    expect((await post({ resource: ORDERS, events: [event()] }, token)).status).toBe(200);
  });

  test('the endpoint is in the discovery metadata', async () => {
    const metadata = await (await fetch(`${tether.issuer}/.well-known/oauth-authorization-server`, { dispatcher: tether.dispatcherFor() })).json() as Record<string, unknown>;
    expect(metadata.tether_use_report_endpoint).toBe(endpoint);
  });
});

describe('who may not report', () => {
  test('a client that does not serve the resource: 403 access_denied, nothing written', async () => {
    const before = await rowCount();
    const stranger = await tether.token({ client: 'stranger-api', resource: USE_REPORTS });
    await expectAnswer(await post({ resource: ORDERS, events: [event()] }, stranger), 403, 'access_denied');
    // orders-api serves ORDERS, not PAYMENTS; an undeclared resource is served by nobody.
    await expectAnswer(await post({ resource: PAYMENTS, events: [event()] }), 403, 'access_denied');
    await expectAnswer(await post({ resource: UNKNOWN, events: [event()] }), 403, 'access_denied');
    expect(await rowCount()).toBe(before);
  });

  test('no token, a bearer (unbound) token, a token for another audience, a revoked token: 401 with a challenge, nothing written', async () => {
    const before = await rowCount();
    const none = await post({ resource: ORDERS, events: [event()] }, null);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="tether-use-reports"/);

    const bearer = await tether.token({ client: 'bearer-reporter', resource: USE_REPORTS });
    expect(bearer.claims!.cnf).toBeUndefined();
    await expectAnswer(await post({ resource: ORDERS, events: [event()] }, bearer), 401, 'invalid_token');

    const otherAudience = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
    await expectAnswer(await post({ resource: ORDERS, events: [event()] }, otherAudience), 401, 'invalid_token');

    const revoked = await tether.token({ client: 'orders-api', resource: USE_REPORTS });
    await tether.revoke(revoked);
    await expectAnswer(await post({ resource: ORDERS, events: [event()] }, revoked), 401, 'invalid_token');

    // The certificate-bound token without its certificate on the connection.
    const response = await fetch(endpoint, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${reporterToken.accessToken}` },
      body: JSON.stringify({ resource: ORDERS, events: [event()] }), dispatcher: tether.dispatcherFor(),
    });
    await expectAnswer(response, 401, 'invalid_token');
    expect(await rowCount()).toBe(before);
  });

  test('GET: 405 with Allow: POST', async () => {
    const response = await fetch(endpoint, { dispatcher: tether.dispatcherFor() });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });
});

/** A report sent as given: headers repeated as arrays, any Host. Resolves the status and JSON body. */
function rawPost(headers: Record<string, string | string[]>, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(endpoint);
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port: url.port, path: url.pathname, method: 'POST', ca: tether.pki.ca.certificatePem, servername: 'localhost',
      headers: { host: url.host, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers },
    }, (res) => {
      let answer = '';
      res.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: answer ? JSON.parse(answer) as Record<string, unknown> : {} }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

describe('hostile headers on a DPoP-bound report', () => {
  let token: IssuedAccessToken;
  const proofFor = (htu: string) => dpopProof(token.credentials.dpopKey!, { htm: 'POST', htu, accessToken: token.accessToken });

  beforeAll(async () => {
    token = await tether.token({ client: 'orders-api-dpop', resource: USE_REPORTS });
  });

  test('a proof for another host, sent with that Host: 421, nothing written (htu is compared with the configured issuer, not the Host)', async () => {
    const before = await rowCount();
    const answer = await rawPost({ host: 'evil.example', authorization: `DPoP ${token.accessToken}`, dpop: await proofFor('https://evil.example/use-reports') }, { resource: ORDERS, events: [event()] });
    expect(answer.status).toBe(421);
    expect(await rowCount()).toBe(before);
  });

  test('two DPoP proofs: 401 invalid_dpop_proof; two Authorization headers, even the same one twice: 401 invalid_request (node:http kept only the first, and the report was written)', async () => {
    const before = await rowCount();
    const twoProofs = await rawPost({ authorization: `DPoP ${token.accessToken}`, dpop: [await proofFor(endpoint), await proofFor(endpoint)] }, { resource: ORDERS, events: [event()] });
    expect([twoProofs.status, twoProofs.body.error]).toEqual([401, 'invalid_dpop_proof']);
    const twoTokens = await rawPost({ authorization: [`DPoP ${token.accessToken}`, `DPoP ${token.accessToken}`], dpop: await proofFor(endpoint) }, { resource: ORDERS, events: [event()] });
    expect([twoTokens.status, twoTokens.body.error]).toEqual([401, 'invalid_request']);
    expect(await rowCount()).toBe(before);
  });

  test('the same proof 16 times at once: exactly one report is written', async () => {
    const before = await rowCount();
    const proof = await proofFor(endpoint);
    const answers = await Promise.all(Array.from({ length: 16 }, (_, index) => rawPost(
      { authorization: `DPoP ${token.accessToken}`, dpop: proof },
      { resource: ORDERS, report_id: `replayed-proof-${index.toString().padStart(4, '0')}`, events: [event()] },
    )));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1);
    expect(answers.filter((answer) => answer.status === 401 && answer.body.error === 'invalid_dpop_proof')).toHaveLength(15);
    expect(await rowCount()).toBe(before + 1);
  });
});

describe('a report sent again with its report_id (docs/use-reports.md#exactly-once)', () => {
  test('the second answer is 200 duplicate and writes nothing; 16 concurrent resends write it once', async () => {
    const before = await rowCount();
    const report = { resource: ORDERS, report_id: randomUUID(), events: [event(), event({ count: 3 })] };
    const first = await post(report);
    expect([first.status, await first.json()]).toEqual([200, { events: 2 }]);
    const again = await post(report);
    expect([again.status, await again.json()]).toEqual([200, { events: 0, duplicate: true }]);
    expect(await rowCount()).toBe(before + 2);

    const burst = { ...report, report_id: randomUUID() };
    const answers = await Promise.all(Array.from({ length: 16 }, async () => (await post(burst)).json() as Promise<{ events: number; duplicate?: boolean }>));
    expect(answers.filter((answer) => answer.duplicate === true)).toHaveLength(15);
    expect(answers.filter((answer) => answer.events === 2)).toHaveLength(1);
    expect(await rowCount()).toBe(before + 4);
  });

  test('the same id from another reporter is its own report', async () => {
    const token = await tether.token({ client: 'orders-api-dpop', resource: USE_REPORTS });
    const report = { resource: ORDERS, report_id: randomUUID(), events: [event()] };
    expect(await (await post(report)).json()).toEqual({ events: 1 });
    expect(await (await post(report, token)).json()).toEqual({ events: 1 });
  });
});

describe('reports that are not what the package writes: 400 invalid_request, nothing written', () => {
  const hourAgo = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString();
  const cases: [string, unknown][] = [
    ['an unknown reason', { resource: ORDERS, events: [event({ reason: 'bored' })] }],
    ['a refusal without a reason', { resource: ORDERS, events: [event({ reason: undefined })] }],
    ['an accepted use with a reason', { resource: ORDERS, events: [event({ outcome: 'accepted' })] }],
    ['an accepted use naming no token', { resource: ORDERS, events: [event({ outcome: 'accepted', reason: undefined, code: undefined, token_id: undefined })] }],
    ['an unknown outcome', { resource: ORDERS, events: [event({ outcome: 'maybe' })] }],
    ['an unknown verifier code', { resource: ORDERS, events: [event({ code: 'ERR_MADE_UP' })] }],
    ['a count as a string', { resource: ORDERS, events: [event({ count: '1' })] }],
    ['a count of zero', { resource: ORDERS, events: [event({ count: 0 })] }],
    ['a fractional count', { resource: ORDERS, events: [event({ count: 1.5 })] }],
    ['scopes as an array', { resource: ORDERS, events: [event({ scopes: ['orders:read'] })] }],
    ['an unknown binding', { resource: ORDERS, events: [event({ binding: 'carrier-pigeon' })] }],
    ['an overlong token id', { resource: ORDERS, events: [event({ token_id: 'x'.repeat(257) })] }],
    ['a control character in a client id', { resource: ORDERS, events: [event({ client_id: 'a\nb' })] }],
    ['an unknown member in an event', { resource: ORDERS, events: [event({ token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' })] }],
    ['an unknown member in the report', { resource: ORDERS, events: [event()], note: 'hi' }],
    ['a time that does not parse', { resource: ORDERS, events: [event({ at: 'yesterday' })] }],
    ['a time without a zone', { resource: ORDERS, events: [event({ at: '2026-12-02T10:00:00' })] }],
    ['a time in the future', { resource: ORDERS, events: [event({ at: new Date(Date.now() + 3_600_000).toISOString() })] }],
    ['a time older than maxEventAge (24 h)', { resource: ORDERS, events: [event({ at: hourAgo(25) })] }],
    ['no events', { resource: ORDERS, events: [] }],
    ['events not an array', { resource: ORDERS, events: event() }],
    ['no resource', { events: [event()] }],
    ['too many events (1 001)', { resource: ORDERS, events: Array.from({ length: 1001 }, () => event()) }],
    ['malformed JSON', '{"resource": "https://orders.test.example", "events": [}'],
    ['a JSON array', '[]'],
    ['a duplicated member in the report', `{"resource":"${PAYMENTS}","resource":"${ORDERS}","events":[${JSON.stringify(event())}]}`],
    ['a duplicated member in an event', `{"resource":"${ORDERS}","events":[${JSON.stringify(event()).replace('"count":1', '"count":1,"count":2')}]}`],
    ['a body over 1 MiB', { resource: ORDERS, events: [event({ client_id: 'c' })], padding: 'x'.repeat(1_100_000) }],
    ['a report_id too short', { resource: ORDERS, report_id: 'short', events: [event()] }],
    ['a report_id with a character outside the URL-safe alphabet', { resource: ORDERS, report_id: 'report id with spaces!', events: [event()] }],
    ['a report_id that is not a string', { resource: ORDERS, report_id: 1234567890123456, events: [event()] }],
  ];

  test.each(cases)('%s', async (_name, body) => {
    const before = await rowCount();
    const response = await post(body);
    const answer = await response.json() as Record<string, unknown>;
    expect([response.status, answer]).toEqual([400, { error: 'invalid_request', error_description: 'the use report is invalid' }]);
    expect(await rowCount()).toBe(before);
  });

  test('a body that is not application/json', async () => {
    const response = await post(JSON.stringify({ resource: ORDERS, events: [event()] }), reporterToken, { 'content-type': 'text/plain' });
    expect(response.status).toBe(400);
  });

  test('one bad event among good ones: the whole report is refused', async () => {
    const before = await rowCount();
    expect((await post({ resource: ORDERS, events: [event(), event(), event({ reason: 'bored' })] })).status).toBe(400);
    expect(await rowCount()).toBe(before);
  });

  test('the reason for a 400 is in the log (for the operator), not in the answer', () => {
    const refusals = log.lines().filter((line) => line.msg === 'use report refused as invalid');
    expect(refusals.length).toBeGreaterThanOrEqual(cases.length);
    expect(refusals.map((line) => line.detail)).toContain('events[0].reason is not a known refusal reason');
    expect(refusals.every((line) => line.reporter === 'orders-api')).toBe(true);
  });
});

describe('no secret anywhere', () => {
  test('neither the reporters\' tokens nor their DPoP proofs are in use_events or the log', async () => {
    const rows = JSON.stringify(await tether.database.knex('use_events'));
    expect(rows).not.toMatch(/eyJ/);
    const text = log.text();
    expect(text).not.toContain(reporterToken.accessToken);
    // Any compact JWS (a token or a proof) in a log line.
    expect(text).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\./);
  });
});

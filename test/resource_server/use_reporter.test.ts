import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createUseReporter, createVerifier, type UseEvent } from '../../src/resource_server/index.js';
import { AUDIENCE, jwksOf, makeSigningKey, mintAccessToken } from './helpers.js';

// The reporter's own rules, against a loopback endpoint whose answers the test chooses (the real
// Tether endpoint is tested in test/use_reports/): what is dropped, what is retried, what is sent.

interface Received {
  headers: IncomingMessage['headers'];
  body: { resource: string; events: Record<string, unknown>[] };
}

let server: Server;
let endpoint: string;
let status = 200;
const received: Received[] = [];
/** Every report that reached the endpoint, whatever it answered. */
const attempts: Received['body'][] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      attempts.push(JSON.parse(text) as Received['body']);
      if (status === 200) received.push({ headers: req.headers, body: JSON.parse(text) as Received['body'] });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/use-reports`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  status = 200;
  received.length = 0;
  attempts.length = 0;
});

const event = (overrides: Partial<UseEvent> = {}): UseEvent => ({
  outcome: 'refused', reason: 'expired', code: 'ERR_TOKEN_EXPIRED', tokenId: 'jti-1', clientId: 'client-a', scopesRequired: ['orders:read'], binding: 'mtls', occurredAt: Date.UTC(2026, 11, 2, 10), ...overrides,
});

const reporterWith = (options: Partial<Parameters<typeof createUseReporter>[0]> = {}) => createUseReporter({
  endpoint, resource: AUDIENCE, authorize: () => ({ authorization: 'Bearer reporter-token' }), flushIntervalMs: 3_600_000, ...options,
});

test('identical events fold into one entry with a count and the latest time; the wire form', async () => {
  const reporter = reporterWith();
  reporter.record(event({ occurredAt: Date.UTC(2026, 11, 2, 10) }));
  reporter.record(event({ occurredAt: Date.UTC(2026, 11, 2, 11) }));
  reporter.record(event({ tokenId: 'jti-2' }));
  expect(reporter.stats()).toMatchObject({ queued: 3, queuedEntries: 2 });
  await reporter.close();
  expect(received).toHaveLength(1);
  expect(received[0]!.headers.authorization).toBe('Bearer reporter-token');
  expect(received[0]!.body).toEqual({
    resource: AUDIENCE,
    report_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    events: [
      { at: '2026-12-02T11:00:00.000Z', outcome: 'refused', reason: 'expired', code: 'ERR_TOKEN_EXPIRED', token_id: 'jti-1', client_id: 'client-a', scopes: 'orders:read', binding: 'mtls', count: 2 },
      { at: '2026-12-02T10:00:00.000Z', outcome: 'refused', reason: 'expired', code: 'ERR_TOKEN_EXPIRED', token_id: 'jti-2', client_id: 'client-a', scopes: 'orders:read', binding: 'mtls', count: 1 },
    ],
  });
  expect(reporter.stats()).toMatchObject({ sent: 3, dropped: 0 });
});

test('a 400 (Tether refuses the report as invalid) is dropped and counted, not retried', async () => {
  const reporter = reporterWith();
  status = 400;
  reporter.record(event());
  reporter.record(event());
  await reporter.flush();
  expect(reporter.stats()).toMatchObject({ queued: 0, sent: 0, dropped: 2, failedBatches: 1 });
  await reporter.close();
});

test('a 403 (this client does not serve the resource) is dropped and counted, not retried; a 401 is retried', async () => {
  const reporter = reporterWith();
  status = 403;
  reporter.record(event());
  await reporter.flush();
  expect(reporter.stats()).toMatchObject({ queued: 0, sent: 0, dropped: 1, failedBatches: 1 });
  status = 401;
  reporter.record(event());
  await reporter.flush();
  expect(reporter.stats()).toMatchObject({ queued: 1, sent: 0, dropped: 1, failedBatches: 2 });
  await reporter.close();
});

test('a failed report is sent again as it was, with the same report_id, before anything recorded since', async () => {
  const reporter = reporterWith();
  status = 503;
  reporter.record(event({ tokenId: 'first' }));
  reporter.record(event({ tokenId: 'second' }));
  await reporter.flush();
  reporter.record(event({ tokenId: 'third' }));
  status = 200;
  await reporter.flush();
  expect(attempts).toHaveLength(3);
  const [failed, resent, next] = attempts as [Received['body'] & { report_id: string }, Received['body'] & { report_id: string }, Received['body'] & { report_id: string }];
  expect(resent).toEqual(failed);
  expect(resent.events.map((sent) => sent.token_id)).toEqual(['first', 'second']);
  expect(next.report_id).not.toBe(failed.report_id);
  expect(next.events.map((sent) => sent.token_id)).toEqual(['third']);
  expect(reporter.stats()).toMatchObject({ queued: 0, sent: 3, dropped: 0, failedBatches: 1 });
  await reporter.close();
});

test('a 503 is kept for a retry; the retry is sent when Tether answers again', async () => {
  const reporter = reporterWith();
  status = 503;
  reporter.record(event());
  await reporter.flush();
  expect(reporter.stats()).toMatchObject({ queued: 1, sent: 0, dropped: 0, failedBatches: 1 });
  status = 200;
  await reporter.flush();
  expect(reporter.stats()).toMatchObject({ queued: 0, sent: 1, dropped: 0, failedBatches: 1 });
  await reporter.close();
});

test('authorize throwing is a failed report, never an exception for the caller; onError hears of it', async () => {
  const errors: string[] = [];
  const reporter = reporterWith({ authorize: () => { throw new Error('no token today'); }, onError: (error) => errors.push(error.message) });
  reporter.record(event());
  await expect(reporter.flush()).resolves.toBeUndefined();
  expect(errors).toEqual(['no token today']);
  expect(reporter.stats()).toMatchObject({ queued: 1, failedBatches: 1 });
  await reporter.close();
  expect(reporter.stats()).toMatchObject({ queued: 0, dropped: 1 });
});

test('anonymous refusals: reported (and folded) by default, left out with reportAnonymous: false', async () => {
  const anonymous = event({ reason: 'no_credentials', code: 'ERR_NO_CREDENTIALS', tokenId: undefined, clientId: undefined, binding: undefined });
  const counting = reporterWith();
  const silent = reporterWith({ reportAnonymous: false });
  for (let index = 0; index < 50; index += 1) {
    counting.record(anonymous);
    silent.record(anonymous);
  }
  expect(counting.stats()).toMatchObject({ queued: 50, queuedEntries: 1 });
  expect(silent.stats()).toMatchObject({ queued: 0, queuedEntries: 0, dropped: 0 });
  await Promise.all([counting.close(), silent.close()]);
});

test('the verifier reports what a refused token claimed, read from its payload; never the token', async () => {
  const key = await makeSigningKey();
  const recorded: UseEvent[] = [];
  const verifier = createVerifier({ issuer: 'https://issuer.test', audience: AUDIENCE, jwks: jwksOf(key), useReporter: { record: (use) => recorded.push(use) } });
  const token = await mintAccessToken(key, { issuer: 'https://issuer.test', audience: 'https://elsewhere.test', claims: { jti: 'claimed-jti', client_id: 'claimed-client' } });
  await expect(verifier.verify({ method: 'GET', url: `${AUDIENCE}/x`, headers: { authorization: `Bearer ${token}` } })).rejects.toMatchObject({ code: 'ERR_TOKEN_AUDIENCE' });
  // A reporter that throws changes nothing for the request.
  const throwing = createVerifier({ issuer: 'https://issuer.test', audience: AUDIENCE, jwks: jwksOf(key), useReporter: { record: () => { throw new Error('boom'); } } });
  await expect(throwing.verify({ method: 'GET', url: `${AUDIENCE}/x`, headers: {} })).rejects.toMatchObject({ code: 'ERR_NO_CREDENTIALS' });
  expect(recorded).toEqual([{
    outcome: 'refused', reason: 'wrong_audience', code: 'ERR_TOKEN_AUDIENCE', tokenId: 'claimed-jti', clientId: 'claimed-client',
    tokenAudience: 'https://elsewhere.test', scopesRequired: [], binding: 'bearer', occurredAt: expect.any(Number),
  }]);
  expect(JSON.stringify(recorded)).not.toContain(token);
});

test('options are checked, each error naming the option', () => {
  const authorize = () => ({});
  expect(() => createUseReporter({ resource: AUDIENCE, authorize })).toThrow(/give endpoint, or issuer/);
  expect(() => createUseReporter({ endpoint: 'ftp://x', resource: AUDIENCE, authorize })).toThrow(/endpoint must be/);
  expect(() => createUseReporter({ endpoint, resource: '', authorize })).toThrow(/resource must be/);
  expect(() => createUseReporter({ endpoint, resource: AUDIENCE, authorize, batchSize: 1001 })).toThrow(/batchSize must be at most 1000/);
  expect(() => createUseReporter({ endpoint, resource: AUDIENCE, authorize, maxQueuedEvents: 0 })).toThrow(/maxQueuedEvents must be a positive integer/);
});

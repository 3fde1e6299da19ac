import { Agent } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { basicAuth, postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { rowCounts } from '../storage/table_dump.js';
import { DPOP_SECRET, ORDERS, ledgerConfig } from './ledger_config.js';

/**
 * Issue 12 item 6: unauthenticated traffic must not grow the ledger without bound, and every
 * refusal must stay visible. Within a window, the first refusal of a kind (source address,
 * endpoint, status, error, registered client, reason) is written at once; the others are one row
 * with `details.count`. With `rejectionKinds` reached, new kinds are counted per endpoint and error.
 * The window here is an hour and is ended by `flush()`, so every count below is exact.
 */

let tether: RunningTether;
const agents = new Map<string, Agent>();

beforeAll(async () => {
  tether = await startTestTether({ config: { ...ledgerConfig(), ledger: { rejectionWindow: '60m', rejectionKinds: 3 } } });
});

afterAll(async () => {
  await Promise.all([...agents.values()].map((agent) => agent.close()));
  await tether?.close();
});

/** A TLS client whose connections come from `address` (any 127.0.0.0/8 address is this machine). */
function from(address: string): Agent {
  if (!agents.has(address)) agents.set(address, new Agent({ localAddress: address, connect: { ca: tether.pki.ca.certificatePem } }));
  return agents.get(address)!;
}

const unknownClient = (address: string, n: number) => postForm(tether.tokenEndpoint, {
  grant_type: 'client_credentials', client_id: `nobody-${n}`, client_secret: 'guess', resource: ORDERS,
}, { dispatcher: from(address) });

const wrongSecret = (address: string, n: number) => postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
  dispatcher: from(address), headers: { authorization: basicAuth('dpop-worker', `${DPOP_SECRET}-guess-${n}`) },
});

async function burst(count: number, send: (n: number) => Promise<TokenResponse>, parallel = 8): Promise<TokenResponse[]> {
  const answers: TokenResponse[] = [];
  for (let start = 0; start < count; start += parallel) {
    answers.push(...await Promise.all(Array.from({ length: Math.min(parallel, count - start) }, (_, index) => send(start + index))));
  }
  return answers;
}

const rejectionRows = () => tether.database.knex('ledger_events').where({ type: 'request.rejected' }).orderBy('id');

function expectAll(answers: TokenResponse[], status: number, body: Record<string, unknown>): void {
  expect(answers.map((answer) => [answer.status, answer.body])).toEqual(answers.map(() => [status, body]));
}

const INVALID_CLIENT = { error: 'invalid_client', error_description: 'client authentication failed' };

test('an anonymous burst writes one row per kind at once and one counted row per kind at the end of the window', async () => {
  const before = await rowCounts(tether.database.knex);

  expectAll(await burst(50, (n) => unknownClient('127.0.0.2', n)), 401, INVALID_CLIENT);
  expectAll(await burst(10, (n) => wrongSecret('127.0.0.2', n)), 401, INVALID_CLIENT);
  expectAll(await burst(20, (n) => unknownClient('127.0.0.3', n)), 401, INVALID_CLIENT);
  // rejectionKinds (3) reached: further kinds are counted per endpoint and error only.
  expectAll(await burst(20, (n) => unknownClient('127.0.0.4', n)), 401, INVALID_CLIENT);
  expectAll(await burst(20, (n) => unknownClient('127.0.0.5', n)), 401, INVALID_CLIENT);

  // Before the window ends: the first of each kind, and of the overflow, written before its answer.
  const immediate = await rejectionRows();
  // (Which of eight parallel requests arrived first varies; the claimed id shows which.)
  const claimed = expect.stringMatching(/^nobody-\d$/);
  expect(immediate.map((row) => [row.source_address, row.client_id, row.details.reason, row.details.count])).toEqual([
    ['127.0.0.2', claimed, 'client not found', undefined],
    ['127.0.0.2', 'dpop-worker', 'invalid secret provided', undefined],
    ['127.0.0.3', claimed, 'client not found', undefined],
    ['127.0.0.4', claimed, 'client not found', undefined],
  ]);

  await tether.app.unauthenticatedRejections.flush();
  const rows = await rejectionRows();
  expect(rows).toHaveLength(8);
  expect(rows.slice(4).map((row) => [row.source_address, row.client_id, row.details])).toEqual([
    ['127.0.0.2', null, expect.objectContaining({ route: 'token', status: 401, error: 'invalid_client', reason: 'client not found', count: 49, window_seconds: 3600 })],
    ['127.0.0.2', 'dpop-worker', expect.objectContaining({ route: 'token', status: 401, error: 'invalid_client', reason: 'invalid secret provided', count: 9 })],
    ['127.0.0.3', null, expect.objectContaining({ reason: 'client not found', count: 19 })],
    [null, null, expect.objectContaining({ route: 'token', error: 'invalid_client', count: 39, overflow: true })],
  ]);
  for (const row of rows.slice(4)) {
    expect(Date.parse(row.details.first_at)).toBeLessThanOrEqual(Date.parse(row.details.last_at));
    expect(row.request_id).toMatch(/^[\w-]+$/);
  }
  // Every refusal is accounted for: rows without a count stand for one.
  expect(rows.reduce((sum, row) => sum + (row.details.count ?? 1), 0)).toBe(120);
  // Nothing else was written anywhere.
  const after = await rowCounts(tether.database.knex);
  expect(after).toEqual({ ...before, ledger_events: before.ledger_events! + 8 });

  // A new window: the first refusal of a kind is written at once again.
  const next = await unknownClient('127.0.0.2', 0);
  expect(next.status).toBe(401);
  const [latest] = await tether.database.knex('ledger_events').orderBy('id', 'desc').limit(1);
  expect(latest).toMatchObject({ request_id: next.headers.get('x-request-id'), source_address: '127.0.0.2', client_id: 'nobody-0', details: { reason: 'client not found' } });
});

test('16 identical anonymous requests at once: exactly one row before the answers, one counted row after', async () => {
  await tether.app.unauthenticatedRejections.flush();
  const before = (await rejectionRows()).length;
  const answers = await Promise.all(Array.from({ length: 16 }, (_, n) => unknownClient('127.0.0.6', n)));
  expectAll(answers, 401, INVALID_CLIENT);
  expect((await rejectionRows()).length).toBe(before + 1);
  await tether.app.unauthenticatedRejections.flush();
  const rows = (await rejectionRows()).slice(before);
  expect(rows.map((row) => row.details.count)).toEqual([undefined, 15]);
});

test('refusals of an authenticated client are each written, with their own request id', async () => {
  await tether.app.unauthenticatedRejections.flush();
  const before = (await rejectionRows()).length;
  const answers = await burst(5, () => postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'worker', resource: 'https://nowhere.ledger.test' }, {
    dispatcher: tether.dispatcherFor('worker'),
  }));
  expectAll(answers, 400, { error: 'invalid_target', error_description: 'the requested resource is not registered at this server' });
  const rows = (await rejectionRows()).slice(before);
  expect(rows.map((row) => row.request_id).sort()).toEqual(answers.map((answer) => answer.headers.get('x-request-id')).sort());
  expect(rows.every((row) => row.client_id === 'worker' && row.details.count === undefined)).toBe(true);
});

test('attacker-chosen fields are cut short: a refused request with 400-character values writes a row under 1 KB', async () => {
  await tether.app.unauthenticatedRejections.flush();
  const long = 'x'.repeat(400);
  const response = await postForm(tether.tokenEndpoint, {
    grant_type: `client_credentials${long}`, client_id: `c${long}`, client_secret: long, scope: long, token_type_hint: long,
    resource: Array.from({ length: 10 }, (_, index) => `https://${index}${long}`),
  }, { dispatcher: from('127.0.0.7') });
  expect(response.status).toBe(401);
  const [row] = await tether.database.knex('ledger_events').where({ request_id: response.headers.get('x-request-id') });
  expect(row.client_id).toHaveLength(64 + 1);
  expect(row.details.resources).toHaveLength(4);
  const [{ bytes }] = (await tether.database.knex.raw('SELECT pg_column_size(e.*) AS bytes FROM ledger_events e WHERE id = ?', [row.id])).rows;
  expect(Number(bytes)).toBeLessThan(1024);
});

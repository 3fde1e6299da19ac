import { USE_REFUSAL_REASONS } from 'tether-oauth-resource-server';
import type { Database } from '../../src/storage/database.js';
import { appendUseEvents, type UseEventInput } from '../../src/ledger/use_events.js';
import { openTestDatabase } from '../support/database.js';

/** The storage of use reports: one statement appends events, rollups and last use (issue 19). */

let database: Database;
const origin = { reporterClientId: 'orders-api', resource: 'https://orders.example.test', instanceId: 'test-instance' };
const minute = 60_000;

async function issue(tokenId: string, fields: { expiresAt?: Date; revokedAt?: Date } = {}): Promise<void> {
  await database.knex('issued_tokens').insert({
    token_id: tokenId, format: 'jwt', client_id: 'shop', subject: 'shop', resource: origin.resource, scope: 'orders:read',
    binding_method: 'mtls', binding_thumbprint: 'x', issued_at: new Date(Date.now() - 10 * minute),
    expires_at: fields.expiresAt ?? new Date(Date.now() + 10 * minute), revoked_at: fields.revokedAt ?? null,
  });
}

const accepted = (tokenId: string, occurredAt = new Date(), count = 1): UseEventInput => ({
  occurredAt, outcome: 'accepted', tokenId, clientId: 'shop', scopesRequired: 'orders:read', bindingMethod: 'mtls', count,
});

beforeAll(async () => {
  database = await openTestDatabase();
  await issue('live');
  await issue('revoked-before', { revokedAt: new Date(Date.now() - 5 * minute) });
  await issue('expired-before', { expiresAt: new Date(Date.now() - 5 * minute) });
});

afterAll(async () => {
  await database?.close();
});

test('a batch lands as events, rollups and last use, each token state as Tether knew it when the API saw it', async () => {
  const seen = new Date(Date.now() - minute);
  const result = await appendUseEvents(database.knex, origin, [
    accepted('live', seen, 3),
    accepted('revoked-before', seen),
    accepted('expired-before', seen),
    accepted('never-issued', seen),
    { occurredAt: seen, outcome: 'refused', reason: 'wrong_audience', code: 'ERR_TOKEN_AUDIENCE', tokenId: 'live', clientId: 'shop', tokenAudience: 'https://payments.example.test', scopesRequired: '', count: 1 },
  ]);
  expect(result).toEqual({ events: 5, tokensTouched: 3, duplicate: false });
  const states = await database.knex('use_events').select('token_id', 'outcome', 'token_state', 'count', 'reporter_client_id', 'resource').orderBy('id');
  expect(states).toEqual([
    { token_id: 'live', outcome: 'accepted', token_state: 'active', count: 3, reporter_client_id: 'orders-api', resource: origin.resource },
    { token_id: 'revoked-before', outcome: 'accepted', token_state: 'revoked', count: 1, reporter_client_id: 'orders-api', resource: origin.resource },
    { token_id: 'expired-before', outcome: 'accepted', token_state: 'expired', count: 1, reporter_client_id: 'orders-api', resource: origin.resource },
    { token_id: 'never-issued', outcome: 'accepted', token_state: 'unknown', count: 1, reporter_client_id: 'orders-api', resource: origin.resource },
    { token_id: 'live', outcome: 'refused', token_state: 'active', count: 1, reporter_client_id: 'orders-api', resource: origin.resource },
  ]);
  const lastUsed = await database.knex('issued_tokens').select('token_id', 'last_used_at').orderBy('token_id');
  for (const row of lastUsed) expect(new Date(row.last_used_at).getTime()).toBe(seen.getTime());
});

test('rollups add up across batches and last use never moves back', async () => {
  const earlier = new Date(Date.now() - 2 * minute);
  await appendUseEvents(database.knex, origin, [accepted('live', earlier, 2)]);
  const [live] = await database.knex('issued_tokens').where({ token_id: 'live' }).select('last_used_at');
  expect(new Date(live.last_used_at).getTime()).toBeGreaterThan(earlier.getTime());
  // Summed over days: run just after midnight (UTC), the two batches' times fall on two days, two rollup rows.
  const [rollup] = await database.knex('use_rollups')
    .where({ client_id: 'shop', outcome: 'accepted', token_state: 'active', resource: origin.resource })
    .select(database.knex.raw('sum(count)::int AS count'));
  expect(rollup.count).toBe(5);
});

test('a time in the future is taken as the time of receipt', async () => {
  const result = await appendUseEvents(database.knex, origin, [accepted('future', new Date(Date.now() + 3600_000))]);
  expect(result.events).toBe(1);
  const [row] = await database.knex('use_events').where({ token_id: 'future' }).select(database.knex.raw('occurred_at <= now() AS bounded'));
  expect(row.bounded).toBe(true);
});

test('every refusal reason of the package is accepted by the schema; anything else is refused', async () => {
  const refused = USE_REFUSAL_REASONS.map((reason): UseEventInput => ({ occurredAt: new Date(), outcome: 'refused', reason, scopesRequired: '', count: 1 }));
  expect((await appendUseEvents(database.knex, origin, refused)).events).toBe(USE_REFUSAL_REASONS.length);
  await expect(appendUseEvents(database.knex, origin, [{ ...refused[0]!, reason: 'forged' as never }])).rejects.toThrow(/use_events_reason_known/);
  await expect(appendUseEvents(database.knex, origin, [{ ...accepted('live'), reason: 'expired' }])).rejects.toThrow(/use_events_reason_known/);
  await expect(appendUseEvents(database.knex, origin, [accepted('live', new Date(), 0)])).rejects.toThrow(/use_events_count_positive/);
});

test.each([
  ['UPDATE', "UPDATE use_events SET client_id = 'mallory'"],
  ['DELETE', 'DELETE FROM use_events'],
  ['TRUNCATE', 'TRUNCATE use_events'],
])('use_events is append-only: %s is refused by the database', async (operation, sql) => {
  await expect(database.knex.raw(sql)).rejects.toThrow(`use_events is append-only (${operation} refused)`);
});

describe('a report id is taken once', () => {
  const identity = (reportId: string) => ({ reportId, rememberSeconds: 86_400 });

  test('the same id again writes nothing and says so; another id, or another reporter with the same id, is written', async () => {
    const before = Number((await database.knex('use_events').count({ n: '*' }))[0]!.n);
    expect(await appendUseEvents(database.knex, origin, [accepted('live')], identity('report-0000000001'))).toMatchObject({ events: 1, duplicate: false });
    expect(await appendUseEvents(database.knex, origin, [accepted('live'), accepted('live')], identity('report-0000000001'))).toEqual({ events: 0, tokensTouched: 0, duplicate: true });
    expect((await appendUseEvents(database.knex, origin, [accepted('live')], identity('report-0000000002'))).events).toBe(1);
    expect((await appendUseEvents(database.knex, { ...origin, reporterClientId: 'reports-api' }, [accepted('live')], identity('report-0000000001'))).events).toBe(1);
    expect(Number((await database.knex('use_events').count({ n: '*' }))[0]!.n)).toBe(before + 3);
  });

  test('16 concurrent sends of one report: exactly one is written, the rollup counts it once', async () => {
    const rollupCount = async () => Number((await database.knex('use_rollups').where({ client_id: 'concurrent' }).sum({ n: 'count' }))[0]!.n ?? 0);
    const event: UseEventInput = { ...accepted('live'), clientId: 'concurrent', count: 7 };
    const results = await Promise.all(Array.from({ length: 16 }, () => appendUseEvents(database.knex, origin, [event], identity('report-concurrent-1'))));
    expect(results.filter((result) => !result.duplicate)).toHaveLength(1);
    expect(results.filter((result) => result.duplicate)).toHaveLength(15);
    expect(await rollupCount()).toBe(7);
  });

  test('ids received longer ago than rememberSeconds are forgotten by the next append', async () => {
    await database.knex('use_reports_received').insert({ reporter_client_id: 'orders-api', report_id: 'report-old-000001', received_at: new Date(Date.now() - 3 * 86_400_000) });
    await appendUseEvents(database.knex, origin, [accepted('live')], identity('report-0000000003'));
    expect(await database.knex('use_reports_received').where({ report_id: 'report-old-000001' })).toHaveLength(0);
    expect(await database.knex('use_reports_received').where({ report_id: 'report-0000000003' })).toHaveLength(1);
  });
});

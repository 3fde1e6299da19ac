import { USE_REFUSAL_REASONS } from 'tether-oauth-resource-server';
import { parseConfig } from '../../src/config/load_config.js';
import type { TetherConfig } from '../../src/config/schema.js';
import { exposureReport } from '../../src/ledger/exposure_report.js';
import { windowDaysOf } from '../../src/ledger/report_window.js';
import { reportJson } from '../../src/cli/report_command.js';
import type { Database } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { ELSEWHERE, ORDERS, PAYMENTS, REPORTS, refusalCount, reportConfig, seedReportWorld, windowStart, type ReportTimes } from './report_world.js';

/**
 * The exposure report's queries and rows (issue 19 part 2) on a seeded database: exact rows, every
 * refusal reason counted, the lateral-movement and revoked-and-presented signals, window edges,
 * filters. Times are whole UTC days; a run that crosses midnight UTC would see another window.
 */

let database: Database;
let config: TetherConfig;
let times: ReportTimes;

beforeAll(async () => {
  database = await openTestDatabase();
  config = parseConfig({ issuer: 'https://localhost:8443', ...reportConfig() });
  times = await seedReportWorld(database.knex);
});

afterAll(async () => {
  await database?.close();
});

const iso = (date: Date) => date.toISOString();
const report = async (options: { days?: number; clientId?: string; resource?: string } = {}) =>
  reportJson(await exposureReport(database.knex, config, { days: 30, ...options })) as Record<string, unknown> & {
    clients: Record<string, unknown>[]; grants: Record<string, unknown>[]; resources: Record<string, unknown>[];
  };

const client = (clientId: string, fields: Record<string, unknown> = {}) => ({
  client_id: clientId, configured: true, has_grants: true, serves_api: false, suspended: false, live_tokens: 0, issued_in_window: 0, uses: 0, last_issued_at: null, last_used_at: null, idle: false, ...fields,
});
const grant = (clientId: string, resource: string, granted: string[], fields: Record<string, unknown> = {}) => ({
  client_id: clientId, resource, configured: true, granted_scopes: granted, used_scopes: [], unused_scopes: granted, use_reported: true, uses: 0,
  live_tokens: 0, issued_in_window: 0, last_issued_at: null, last_used_at: null, suggestion: 'unused', ...fields,
});

test('the whole report over 30 days: every client, API and grant, exactly', async () => {
  const refusedAtOrders = USE_REFUSAL_REASONS.reduce((sum, reason) => sum + refusalCount(reason), 0);
  const seen = iso(times.seen);
  expect(await report()).toEqual({
    window: { days: 30, from: iso(times.from30), to: expect.any(String) },
    filter: { client: null, resource: null },
    records_since: null,
    clients: [
      client('shop', { live_tokens: 2, issued_in_window: 3, uses: 5, last_issued_at: iso(times.shopOrders1Issued), last_used_at: seen }),
      client('batch', { idle: true }),
      client('orders-api', { has_grants: false, serves_api: true }),
      client('auditor', { live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.auditorIssued) }),
      client('resting', { suspended: true, idle: true }),
      client('edge-in', { issued_in_window: 1, last_issued_at: iso(times.edgeInIssued) }),
      client('edge-out', { idle: true }),
      client('former', { configured: false, has_grants: false, live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.formerIssued) }),
    ],
    resources: [
      {
        resource: ORDERS, configured: true, live_tokens: 2, issued_in_window: 4, last_issued_at: iso(times.shopOrders1Issued), last_used_at: seen,
        use_reported: true, accepted: 5, refused: refusedAtOrders,
      },
      {
        resource: PAYMENTS, configured: true, live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.shopPaymentsIssued), last_used_at: null,
        use_reported: true, accepted: 0, refused: 2,
      },
      { resource: REPORTS, configured: true, live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.auditorIssued), last_used_at: null, use_reported: false, accepted: 0, refused: 0 },
    ],
    grants: [
      grant('shop', ORDERS, ['orders:read', 'orders:write'], {
        used_scopes: ['orders:read'], unused_scopes: ['orders:write'], uses: 5, live_tokens: 1, issued_in_window: 2,
        last_issued_at: iso(times.shopOrders1Issued), last_used_at: seen, suggestion: 'narrow',
      }),
      grant('shop', PAYMENTS, ['payments:read'], { live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.shopPaymentsIssued) }),
      grant('batch', ORDERS, ['orders:read']),
      grant('auditor', REPORTS, ['reports:read'], {
        unused_scopes: null, use_reported: false, live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.auditorIssued), suggestion: null,
      }),
      grant('resting', ORDERS, ['orders:read']),
      grant('edge-in', ORDERS, ['orders:read'], { issued_in_window: 1, last_issued_at: iso(times.edgeInIssued) }),
      grant('edge-out', ORDERS, ['orders:read']),
      grant('former', ORDERS, [], { configured: false, unused_scopes: [], live_tokens: 1, issued_in_window: 1, last_issued_at: iso(times.formerIssued), suggestion: null }),
    ],
    idle_clients: ['batch', 'edge-out'],
    refusals: [
      ...[...USE_REFUSAL_REASONS].sort((a, b) => refusalCount(b) - refusalCount(a))
        .map((reason) => ({ resource: ORDERS, reason, count: refusalCount(reason), last_at: seen })),
      { resource: PAYMENTS, reason: 'wrong_audience', count: 2, last_at: seen },
    ],
    lateral_movement: [
      { presented_at: PAYMENTS, token_audience: ORDERS, audience_known: true, client_id: 'shop', count: 2, first_at: seen, last_at: seen },
      { presented_at: ORDERS, token_audience: ELSEWHERE, audience_known: false, client_id: 'shop', count: 1, first_at: seen, last_at: seen },
    ],
    replays: [{ resource: ORDERS, client_id: 'shop', outcome: 'refused', count: refusalCount('replayed_proof'), last_at: seen }],
    revoked_presented: [
      { resource: ORDERS, client_id: 'shop', outcome: 'accepted', count: 1, last_at: seen },
      { resource: ORDERS, client_id: 'shop', outcome: 'refused', count: refusalCount('revoked'), last_at: seen },
    ],
  });
});

test('window edges: the day before the window and a token issued a minute before it count only in a longer window', async () => {
  const thirty = await report();
  expect(thirty.clients.find((row) => row.client_id === 'edge-out')).toMatchObject({ issued_in_window: 0, idle: true });
  expect(thirty.clients.find((row) => row.client_id === 'edge-in')).toMatchObject({ issued_in_window: 1, idle: false });
  expect(thirty.clients.find((row) => row.client_id === 'batch')).toMatchObject({ uses: 0, idle: true });

  const longer = await report({ days: 31 });
  expect(longer.window).toMatchObject({ days: 31, from: iso(windowStart(31, times.now)) });
  expect(longer.clients.find((row) => row.client_id === 'edge-out')).toMatchObject({ issued_in_window: 1, idle: false });
  expect(longer.clients.find((row) => row.client_id === 'batch')).toMatchObject({
    uses: 1, issued_in_window: 1, last_used_at: iso(new Date(times.from30.getTime() - 12 * 3600_000)), idle: false,
  });
  expect(longer.grants.find((row) => row.client_id === 'batch')).toMatchObject({ used_scopes: ['orders:read'], unused_scopes: [], suggestion: null });
  expect(longer.idle_clients).toEqual([]);

  // One day: today only; the presentations of an hour ago are in it, the 30-day-old issuance is not.
  const today = await report({ days: 1 });
  expect(today.clients.find((row) => row.client_id === 'edge-in')).toMatchObject({ issued_in_window: 0, idle: true });
  expect(today.clients.find((row) => row.client_id === 'shop')).toMatchObject({ uses: 5 });
});

test('--client: that client\'s rows, the APIs it touched, its refusals only', async () => {
  const shop = await report({ clientId: 'shop' });
  expect(shop.filter).toEqual({ client: 'shop', resource: null });
  expect(shop.clients.map((row) => row.client_id)).toEqual(['shop']);
  expect(shop.grants.map((row) => [row.client_id, row.resource])).toEqual([['shop', ORDERS], ['shop', PAYMENTS]]);
  expect(shop.resources.map((row) => row.resource)).toEqual([ORDERS, PAYMENTS]);
  expect((shop.refusals as unknown[]).length).toBe(USE_REFUSAL_REASONS.length + 1);

  const auditor = await report({ clientId: 'auditor' });
  expect(auditor.resources).toEqual([expect.objectContaining({ resource: REPORTS, use_reported: false })]);
  expect(auditor).toMatchObject({ refusals: [], lateral_movement: [], replays: [], revoked_presented: [] });

  const batch = await report({ clientId: 'batch' });
  expect(batch.idle_clients).toEqual(['batch']);
  // Its API reports use from others: the orders row is there with none of batch's presentations.
  expect(batch.resources).toEqual([expect.objectContaining({ resource: ORDERS, use_reported: true, accepted: 0, refused: 0 })]);
});

test('--resource: the clients of that API; lateral movement in both directions', async () => {
  const payments = await report({ resource: PAYMENTS });
  expect(payments.clients.map((row) => row.client_id)).toEqual(['shop']);
  expect(payments.grants.map((row) => [row.client_id, row.resource, row.suggestion])).toEqual([['shop', PAYMENTS, 'unused']]);
  expect(payments.refusals).toEqual([{ resource: PAYMENTS, reason: 'wrong_audience', count: 2, last_at: iso(times.seen) }]);
  expect(payments.idle_clients).toEqual([]);

  // The orders API's tokens presented at the payments API are the orders API's concern too.
  const orders = await report({ resource: ORDERS });
  expect((orders.lateral_movement as { presented_at: string }[]).map((row) => row.presented_at)).toEqual([PAYMENTS, ORDERS]);
  expect(orders.clients.map((row) => row.client_id)).toEqual(['shop', 'batch', 'resting', 'edge-in', 'edge-out', 'former']);
  expect(orders.idle_clients).toEqual(['batch', 'edge-out']);
});

test('an empty database: configured clients with grants are idle, no API reports use, nothing refused', async () => {
  const empty = await openTestDatabase();
  try {
    const result = reportJson(await exposureReport(empty.knex, config, { days: 30 }));
    expect(result).toMatchObject({
      records_since: null,
      // Not orders-api: it holds no grant (it serves an API), so it obtains no tokens to be idle with.
      idle_clients: ['shop', 'batch', 'auditor', 'resting', 'edge-in', 'edge-out'],
      refusals: [], lateral_movement: [], replays: [], revoked_presented: [],
    });
    expect((result.grants as { unused_scopes: unknown; suggestion: unknown }[]).every((row) => row.unused_scopes === null && row.suggestion === null)).toBe(true);
  } finally {
    await empty.close();
  }
});

test('the window option: whole days, 1 to 3660', () => {
  expect([windowDaysOf('30d'), windowDaysOf('7'), windowDaysOf('1d'), windowDaysOf('3660d')]).toEqual([30, 7, 1, 3660]);
  expect(['0d', '12h', '-1d', 'd', '30 days', '3661d', '1.5d', ''].map(windowDaysOf)).toEqual(Array(8).fill(undefined));
});

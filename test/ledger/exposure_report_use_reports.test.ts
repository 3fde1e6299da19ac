import { Writable } from 'node:stream';
import { reportCommand } from '../../src/cli/report_command.js';
import type { CommandContext } from '../../src/cli/inventory_output.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import type { UseReporter } from '../../src/resource_server/index.js';
import { startTestTether } from '../support/tether.js';
import { ORDERS, PAYMENTS, ordersReporter, startOrdersApi, useReportsConfig, type RunningApi } from '../use_reports/support.js';

// Issue 19's "done when": a use report from the example API reaches Tether and appears in
// `tether report`. A real Tether, a real orders API whose verifier reports every outcome through the
// package's reporter, the probe's tokens that are wrong in one way each; then the report, whose
// counts must be exactly what use_events holds.

let tether: RunningTether;
let reporter: UseReporter;
let api: RunningApi;
let report: Record<string, unknown> & Record<'refusals' | 'lateral_movement' | 'replays' | 'revoked_presented' | 'grants' | 'clients', Record<string, unknown>[]>;

interface Sum { reason: string | null; client_id: string | null; token_audience: string | null; token_state: string; outcome: string; count: number }
let sums: Sum[];

beforeAll(async () => {
  tether = await startTestTether({ config: useReportsConfig() });
  reporter = await ordersReporter(tether);
  api = await startOrdersApi(tether, reporter);
  await tether.probe({ url: api.url, client: 'mtls-client', resource: ORDERS, scope: 'orders:read', otherResource: PAYMENTS });
  await tether.probe({ url: api.url, client: 'dpop-client', resource: ORDERS, scope: 'orders:read', otherResource: PAYMENTS });
  const token = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
  for (let round = 0; round < 3; round += 1) expect((await tether.fetchWith(token)(api.url)).status).toBe(200);
  await reporter.flush();

  const rows = await tether.database.knex.raw(`
    SELECT reason, client_id, token_audience, token_state, outcome, sum(count)::int AS count
    FROM use_events WHERE resource = ? GROUP BY 1, 2, 3, 4, 5`, [ORDERS]) as { rows: Sum[] };
  sums = rows.rows;
  let text = '';
  const out = new Writable({ write(chunk: Buffer, _encoding, done) { text += chunk.toString(); done(); } });
  const context: CommandContext = { knex: tether.database.knex, config: tether.config, out, actor: 'test', facts: { requestId: 'test', sourceAddress: undefined, instanceId: 'test' } };
  await reportCommand(context, { json: true });
  report = JSON.parse(text) as typeof report;
});

afterAll(async () => {
  await reporter?.close();
  await api?.close();
  await tether?.close();
});

const total = (where: (sum: Sum) => boolean) => sums.filter(where).reduce((sum, row) => sum + row.count, 0);

test('every refusal reason the API reported is in the report with exactly its count', () => {
  const reasons = [...new Set(sums.map((sum) => sum.reason).filter((reason) => reason !== null))].sort();
  expect(reasons.length).toBeGreaterThanOrEqual(10);
  const atOrders = report.refusals.filter((row) => row.resource === ORDERS);
  expect(atOrders.map((row) => row.reason).sort()).toEqual(reasons);
  for (const row of atOrders) expect(row.count).toBe(total((sum) => sum.reason === row.reason));
});

test('a token for the payments API presented at the orders API: lateral movement, per client, exactly counted', () => {
  const lateral = report.lateral_movement.filter((row) => row.token_audience === PAYMENTS);
  expect(lateral.map((row) => [row.presented_at, row.client_id, row.audience_known]).sort()).toEqual([
    [ORDERS, 'dpop-client', true],
    [ORDERS, 'mtls-client', true],
  ]);
  for (const row of lateral) expect(row.count).toBe(total((sum) => sum.reason === 'wrong_audience' && sum.token_audience === PAYMENTS && sum.client_id === row.client_id));
});

test('replayed proofs and revoked tokens presented, as the API refused them', () => {
  expect(report.replays.map((row) => [row.resource, row.client_id, row.count])).toEqual([[ORDERS, 'dpop-client', total((sum) => sum.reason === 'replayed_proof')]]);
  const revoked = report.revoked_presented.filter((row) => row.resource === ORDERS);
  expect(revoked.every((row) => row.outcome === 'refused')).toBe(true);
  expect(revoked.reduce((sum, row) => sum + (row.count as number), 0)).toBe(total((sum) => sum.token_state === 'revoked'));
  expect(revoked.length).toBeGreaterThan(0);
});

test('accepted use: the grant used orders:read only (suggest narrowing); the payments API reports nothing (no suggestion)', () => {
  const grant = (client: string, resource: string) => report.grants.find((row) => row.client_id === client && row.resource === resource);
  expect(grant('mtls-client', ORDERS)).toMatchObject({
    granted_scopes: ['orders:read', 'orders:write'], used_scopes: ['orders:read'], unused_scopes: ['orders:write'], use_reported: true, suggestion: 'narrow',
    uses: total((sum) => sum.outcome === 'accepted' && sum.client_id === 'mtls-client'),
  });
  expect(grant('mtls-client', PAYMENTS)).toMatchObject({ use_reported: false, unused_scopes: null, suggestion: null });
  expect(report.clients.find((row) => row.client_id === 'mtls-client')).toMatchObject({ idle: false, last_used_at: expect.any(String) });
});

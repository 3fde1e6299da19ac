import { randomUUID } from 'node:crypto';
import { createUseReporter, type UseEvent, type UseReporter } from '../../src/resource_server/index.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { startTether } from '../../src/testing/start_tether.js';
import { openDatabase } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { freePort } from '../support/nginx.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp_proxy.js';
import { ORDERS, authorizeWith, fetchOver, ordersReporter, startOrdersApi, useReportsConfig } from './support.js';

// The reporter against a real Tether: what happens to requests and events while Tether cannot be
// reached, and when it is back; concurrency; two instances on one PostgreSQL.

/** A refused presentation with a token id of its own (distinct entries never fold). */
const distinct = (): UseEvent => ({
  outcome: 'refused', reason: 'expired', code: 'ERR_TOKEN_EXPIRED', tokenId: randomUUID(), clientId: 'mtls-client', scopesRequired: ['orders:read'], binding: 'mtls', occurredAt: Date.now(),
});

const sumOf = async (tether: RunningTether, where: Record<string, unknown> = {}) => {
  const [row] = await tether.database.knex('use_events').where(where).sum({ total: 'count' });
  return Number(row?.total ?? 0);
};

describe('Tether unreachable, then back', () => {
  let tether: RunningTether;
  let proxy: TcpProxy;

  beforeAll(async () => {
    // Clients reach Tether through a TCP proxy the test can cut (TLS end to end; the issuer is the proxy's origin).
    const port = await freePort();
    proxy = await startTcpProxy({ host: '127.0.0.1', port });
    tether = await startTetherOn(port, `https://localhost:${proxy.port}`);
  });

  afterAll(async () => {
    await proxy?.close();
    await tether?.close();
  });

  test('requests are answered, the queue stays within its bound, every dropped event is counted; once back, the rest is sent', async () => {
    // A batch as large as the queue: no size-triggered send, each flush is one attempt.
    const reporter = await ordersReporter(tether, { maxQueuedEvents: 3 });
    const api = await startOrdersApi(tether, reporter, { revocation: undefined });
    try {
      const tokens = await Promise.all([0, 1, 2, 3, 4].map(() => tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' })));
      await proxy.cut();
      // Five different tokens, each accepted: five distinct entries for a queue of three.
      for (const token of tokens) expect((await tether.fetchWith(token)(api.url)).status).toBe(200);
      expect(reporter.stats()).toMatchObject({ queued: 3, queuedEntries: 3, sent: 0, dropped: 2, failedBatches: 0 });

      await reporter.flush();
      // The report failed and is kept whole, with its id, to be sent again as it was.
      expect(reporter.stats()).toMatchObject({ queued: 3, queuedEntries: 3, sent: 0, dropped: 2, failedBatches: 1, inFlight: 0 });
      // The kept report is not changed: a new presentation, even of a token in it, needs room and finds none.
      expect((await tether.fetchWith(tokens[0]!)(api.url)).status).toBe(200);
      expect(reporter.stats()).toMatchObject({ queued: 3, queuedEntries: 3, dropped: 3 });
      expect((await tether.fetchWith(tokens[4]!)(api.url)).status).toBe(200);
      expect(reporter.stats()).toMatchObject({ queued: 3, queuedEntries: 3, dropped: 4 });
      await reporter.flush();
      expect(reporter.stats()).toMatchObject({ queued: 3, dropped: 4, failedBatches: 2 });
      expect(await sumOf(tether)).toBe(0);

      await proxy.restore();
      await reporter.flush();
      expect(reporter.stats()).toMatchObject({ queued: 0, queuedEntries: 0, sent: 3, dropped: 4, failedBatches: 2 });
      expect(await sumOf(tether)).toBe(3);
      const kept = tokens.slice(0, 3).map((token) => token.claims!.jti);
      const rows = await tether.database.knex('use_events').select('token_id', 'count');
      expect(rows.map((row) => `${row.token_id} ${row.count}`).sort()).toEqual(kept.map((jti) => `${jti} 1`).sort());
    } finally {
      await reporter.close();
      await api.close();
    }
  });

  test('close() makes a last attempt and counts what it could not send as dropped; later events are dropped', async () => {
    const reporter = await ordersReporter(tether);
    reporter.record(distinct());
    reporter.record(distinct());
    await proxy.cut();
    try {
      await reporter.close();
      reporter.record(distinct());
      expect(reporter.stats()).toMatchObject({ queued: 0, sent: 0, dropped: 3, failedBatches: 1 });
    } finally {
      await proxy.restore();
    }
  });
});

describe('concurrency', () => {
  let tether: RunningTether;

  beforeAll(async () => {
    tether = await startTetherOn(0);
  });

  afterAll(async () => {
    await tether?.close();
  });

  test('16 concurrent flushes of one reporter while it records: every event sent exactly once', async () => {
    const reporter = await ordersReporter(tether, { batchSize: 7 });
    const before = await sumOf(tether);
    try {
      const flushes: Promise<void>[] = [];
      for (let index = 0; index < 160; index += 1) {
        reporter.record(distinct());
        if (index % 10 === 0) flushes.push(reporter.flush());
      }
      await Promise.all(flushes);
      await reporter.flush();
      expect(reporter.stats()).toMatchObject({ queued: 0, sent: 160, dropped: 0, failedBatches: 0 });
      expect(await sumOf(tether) - before).toBe(160);
    } finally {
      await reporter.close();
    }
  });

  test('16 reporters reporting the same presentations at once: counts and rollups add up', async () => {
    const before = await sumOf(tether);
    const [rollupsBefore] = await tether.database.knex('use_rollups').sum({ total: 'count' });
    const shared = Array.from({ length: 20 }, distinct);
    const reporters = await Promise.all(Array.from({ length: 16 }, () => ordersReporter(tether, { batchSize: 5 })));
    try {
      for (const reporter of reporters) for (const event of shared) reporter.record(event);
      await Promise.all(reporters.map((reporter) => reporter.flush()));
      for (const reporter of reporters) expect(reporter.stats()).toMatchObject({ sent: 20, dropped: 0, failedBatches: 0 });
      expect(await sumOf(tether) - before).toBe(320);
      const [rollups] = await tether.database.knex('use_rollups').sum({ total: 'count' });
      expect(Number(rollups?.total) - Number(rollupsBefore?.total ?? 0)).toBe(320);
    } finally {
      await Promise.all(reporters.map((reporter) => reporter.close()));
    }
  });
});

const onPostgres = process.env.DATABASE_URL ? describe : describe.skip;

onPostgres('two Tether instances on one PostgreSQL', () => {
  test('reports to both at once land once each, and the rollups add up', async () => {
    const database = await openTestDatabase();
    const first = await startTether({ config: useReportsConfig(), database });
    const secondDatabase = await openDatabase({ url: database.url! });
    const second = await startTether({ config: useReportsConfig(), database: secondDatabase, pki: first.pki });
    const reporters: UseReporter[] = [];
    try {
      for (const instance of [first, second]) {
        const token = await instance.token({ client: 'orders-api', resource: 'https://use-reports.test.example' });
        for (let index = 0; index < 4; index += 1) {
          reporters.push(createUseReporter({
            endpoint: `${instance.issuer}/use-reports`, resource: ORDERS, authorize: authorizeWith(token),
            fetch: fetchOver(instance.dispatcherFor('orders-api')), batchSize: 3, flushIntervalMs: 3_600_000,
          }));
        }
      }
      // The same presentations through every reporter: the same rollup rows, from two instances at once.
      const shared = Array.from({ length: 30 }, distinct);
      for (const reporter of reporters) for (const event of shared) reporter.record(event);
      await Promise.all(reporters.map((reporter) => reporter.flush()));
      for (const reporter of reporters) expect(reporter.stats()).toMatchObject({ sent: 30, dropped: 0, failedBatches: 0 });
      const instances = await database.knex('use_events').select('instance_id').sum({ total: 'count' }).groupBy('instance_id') as { instance_id: string; total: string }[];
      expect(instances.map((row) => Number(row.total)).sort()).toEqual([120, 120]);
      expect(new Set(instances.map((row) => row.instance_id))).toEqual(new Set([first.app.instanceId, second.app.instanceId]));
      const [rollups] = await database.knex('use_rollups').sum({ total: 'count' });
      expect(Number(rollups?.total)).toBe(240);
    } finally {
      await Promise.all(reporters.map((reporter) => reporter.close()));
      await second.close();
      await secondDatabase.close();
      await first.close();
      await database.close();
    }
  });
});

async function startTetherOn(port: number, issuer?: string): Promise<RunningTether> {
  const database = await openTestDatabase();
  try {
    const tether = await startTether({ config: useReportsConfig(), database, port, ...(issuer ? { issuer } : {}) });
    return { ...tether, close: async () => { await tether.close(); await database.close(); } };
  } catch (error) {
    await database.close();
    throw error;
  }
}

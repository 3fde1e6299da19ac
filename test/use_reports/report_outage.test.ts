import { randomUUID } from 'node:crypto';
import { fetch } from 'undici';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import type { IssuedAccessToken } from '../../src/testing/token_client.js';
import { holdOnlyConnection, openTestDatabase } from '../support/database.js';
import { startFreezableProxy, type FreezableProxy } from '../storage/freezable_proxy.js';
import { ORDERS, USE_REPORTS, authorizeWith, useReportEndpointOf, useReportsConfig } from './support.js';

// The database stops answering while a report arrives: 503 + Retry-After temporarily_unavailable
// within the configured waits, and not one row of the report; once it answers, the same report is taken.

const TIMEOUTS = { statementTimeout: 1000, acquireTimeout: 1000, connectTimeout: 1000 };
const config = () => ({ ...useReportsConfig(), database: { statementTimeout: '1s', acquireTimeout: '1s', connectTimeout: '1s', readinessTimeout: '500ms' } });

const report = () => ({
  resource: ORDERS,
  events: [{ at: new Date().toISOString(), outcome: 'refused', reason: 'expired', code: 'ERR_TOKEN_EXPIRED', token_id: randomUUID(), client_id: 'mtls-client', scopes: '', count: 1 }],
});

async function post(tether: RunningTether, token: IssuedAccessToken, body: unknown) {
  const url = useReportEndpointOf(tether);
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await authorizeWith(token)({ method: 'POST', url })) },
    body: JSON.stringify(body),
    dispatcher: tether.dispatcherFor('orders-api'),
  });
}

async function expectUnavailable(response: Awaited<ReturnType<typeof post>>): Promise<void> {
  expect([response.status, response.headers.get('retry-after'), ((await response.json()) as { error: string }).error]).toEqual([503, '1', 'temporarily_unavailable']);
}

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe : describe.skip)('PostgreSQL frozen', () => {
  let ledger: Database & { url?: string };
  let proxy: FreezableProxy;
  let proxied: Database;
  let tether: RunningTether;

  beforeAll(async () => {
    ledger = await openTestDatabase();
    const target = new URL(ledger.url!);
    proxy = await startFreezableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    proxied = await openDatabase({ url: proxy.proxiedUrl(ledger.url!), timeouts: TIMEOUTS });
    tether = await startTether({ config: config(), database: proxied });
  });

  afterAll(async () => {
    proxy?.thaw();
    await tether?.close();
    await proxied?.close();
    await proxy?.close();
    await ledger?.close();
  });

  test('503 + Retry-After, no rows; after the thaw the report is written', async () => {
    const token = await tether.token({ client: 'orders-api', resource: USE_REPORTS });
    const body = report();
    proxy.freeze();
    try {
      await expectUnavailable(await post(tether, token, body));
    } finally {
      proxy.thaw();
    }
    expect(Number((await ledger.knex('use_events').count({ n: '*' }))[0]!.n)).toBe(0);
    // Bounded retries: the pool may need a moment to replace connections that timed out.
    let status = 0;
    for (let attempt = 0; attempt < 20 && status !== 200; attempt += 1) status = (await post(tether, token, body)).status;
    expect(status).toBe(200);
    expect(Number((await ledger.knex('use_events').count({ n: '*' }))[0]!.n)).toBe(1);
  });
});

(onPostgres ? describe.skip : describe)('PGlite with its one connection held by a transaction that does not end', () => {
  let database: Database;
  let tether: RunningTether;

  beforeAll(async () => {
    database = await openDatabase({ memory: true, timeouts: TIMEOUTS });
    tether = await startTether({ config: config(), database });
  });

  afterAll(async () => {
    await tether?.close();
    await database?.close();
  });

  test('503 + Retry-After, no rows; once released the report is written', async () => {
    const token = await tether.token({ client: 'orders-api', resource: USE_REPORTS });
    const body = report();
    const stuck = await holdOnlyConnection(database.knex);
    try {
      await expectUnavailable(await post(tether, token, body));
    } finally {
      await stuck.release();
    }
    expect(Number((await database.knex('use_events').count({ n: '*' }))[0]!.n)).toBe(0);
    expect((await post(tether, token, body)).status).toBe(200);
    expect(Number((await database.knex('use_events').count({ n: '*' }))[0]!.n)).toBe(1);
  });
});

import { jest } from '@jest/globals';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import { holdOnlyConnection, openTestDatabase } from '../support/database.js';
import { LedgerClient, ORDERS, ledgerConfig } from '../ledger/ledger_config.js';
import { startFreezableProxy, type FreezableProxy } from './freezable_proxy.js';
import { delivered, startLoad, summary, unexpectedAnswers, unrecordedTokens, until, type Outcome } from './outage_load.js';

/**
 * Issue 13 §4, bounded waits. A database that stops answering — PostgreSQL frozen behind a proxy
 * that forwards nothing and keeps every socket open (what SIGSTOP looks like from the client), or
 * PGlite's single connection held by a transaction that never ends — under steady load (20 requests
 * per second: tokens, exchanges, introspections, /readyz):
 * - every answer is a token with its committed issuance event, an introspection, or 503 +
 *   Retry-After + temporarily_unavailable; never a 500;
 * - nothing hangs: every request started at least BOUND_MS before the database came back has been
 *   answered before it came back (counted, not timed: the freeze lasts FREEZE_MS > BOUND_MS);
 * - /readyz answers 503 while the database is gone, 200 after;
 * - service resumes by itself when the database answers again.
 * The timeouts are the test's (shorter than the defaults, so the test is short): statement 1 s
 * (client-side 2 s), acquire 1 s, connect 1 s, readiness 0.5 s.
 */

const TIMEOUTS = { statementTimeout: 1000, acquireTimeout: 1000, connectTimeout: 1000 };
const DATABASE_CONFIG = { statementTimeout: '1s', acquireTimeout: '1s', connectTimeout: '1s', readinessTimeout: '500ms', queueLimit: 64 };
const FREEZE_MS = 10_000;
/** The longest an answer may take while the database is gone: client-side statement wait + acquire + rejection wait, with room for a loaded machine. */
const BOUND_MS = 6_000;
const INTERVAL_MS = 50;

function config(): Record<string, unknown> {
  return { ...ledgerConfig(), database: DATABASE_CONFIG };
}

interface Window {
  goneAt: number;
  backAt: number;
  /** Requests not answered when the database came back. */
  pendingAtBack: Outcome[];
}

/** Everything the outage must respect, asserted on the load's outcomes; returns the figures for the docs. */
async function expectBoundedOutage(outcomes: Outcome[], window: Window, ledger: Database['knex'], label: string): Promise<void> {
  const during = outcomes.filter((outcome) => outcome.startedAt >= window.goneAt && outcome.startedAt <= window.backAt);
  const mustBeAnswered = during.filter((outcome) => outcome.startedAt <= window.backAt - BOUND_MS);
  const hung = window.pendingAtBack.filter((outcome) => outcome.startedAt <= window.backAt - BOUND_MS);
  const latencies = during.filter((outcome) => outcome.endedAt !== undefined && outcome.endedAt <= window.backAt)
    .map((outcome) => outcome.endedAt! - outcome.startedAt);
  const readyzDuring = mustBeAnswered.filter((outcome) => outcome.kind === 'readyz' && outcome.startedAt >= window.goneAt + 1000);
  process.stdout.write(`${label}: ${JSON.stringify({
    all: summary(outcomes),
    startedWhileGone: during.length,
    answeredWhileGone: latencies.length,
    pendingWhenBack: window.pendingAtBack.length,
    hungBeyondBound: hung.length,
    worstLatencyWhileGoneMs: Math.round(Math.max(0, ...latencies)),
    readyzWhileGone: summary(readyzDuring),
  })}\n`);

  expect(unexpectedAnswers(outcomes).map(({ kind, status, error, retryAfter, failure }) => ({ kind, status, error, retryAfter, failure }))).toEqual([]);
  expect(mustBeAnswered.length).toBeGreaterThan(40);
  expect(hung.map(({ kind, startedAt }) => ({ kind, startedAt: Math.round(startedAt - window.goneAt) }))).toEqual([]);
  // Once the database has been gone a second, nothing is served from it: everything is a 503.
  const settled = mustBeAnswered.filter((outcome) => outcome.startedAt >= window.goneAt + 1000);
  expect(settled.filter((outcome) => outcome.status !== 503).map(({ kind, status }) => ({ kind, status }))).toEqual([]);
  expect(readyzDuring.length).toBeGreaterThan(3);
  // Back by itself: tokens and readiness again.
  expect(delivered(outcomes, window.backAt + 500)).toBeGreaterThanOrEqual(20);
  expect(outcomes.filter((outcome) => outcome.kind === 'readyz' && outcome.startedAt > window.backAt + 2000).every((outcome) => outcome.status === 200)).toBe(true);
  expect(await unrecordedTokens(ledger, outcomes)).toEqual([]);
}

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe : describe.skip)('PostgreSQL frozen behind a proxy under steady load', () => {
  let ledger: Database & { url?: string };
  let proxy: FreezableProxy;
  let proxied: Database;
  let tether: RunningTether;
  let client: LedgerClient;
  let subject: string;

  beforeAll(async () => {
    // knex reports every failed connection attempt; the test counts outcomes its own way.
    const log = console.log.bind(console);
    jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      if (!String(args[0]).startsWith('Acquire connection error')) log(...args);
    });
    ledger = await openTestDatabase();
    const target = new URL(ledger.url!);
    proxy = await startFreezableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    proxied = await openDatabase({ url: proxy.proxiedUrl(ledger.url!), timeouts: TIMEOUTS });
    tether = await startTether({ config: config(), database: proxied });
    client = new LedgerClient(tether);
    subject = await client.accessToken('worker', ORDERS);
  });

  afterAll(async () => {
    proxy?.thaw();
    await tether?.close();
    await proxied?.close();
    await proxy?.close();
    await ledger?.close();
    jest.restoreAllMocks();
  });

  test('frozen for 10 s: 503 + Retry-After within the bound, /readyz 503, then service resumes; no 500, no token without its record', async () => {
    const load = startLoad(tether, client, subject, INTERVAL_MS);
    await until(() => delivered(load.outcomes) >= 20);
    proxy.freeze();
    const goneAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, FREEZE_MS));
    const pendingAtBack = load.outcomes.filter((outcome) => outcome.endedAt === undefined);
    const backAt = performance.now();
    proxy.thaw();
    await until(() => delivered(load.outcomes, backAt + 500) >= 20 && load.outcomes.some((outcome) => outcome.kind === 'readyz' && outcome.startedAt > backAt + 2500 && outcome.endedAt !== undefined));
    const outcomes = await load.stop();
    await expectBoundedOutage(outcomes, { goneAt, backAt, pendingAtBack }, ledger.knex, 'PostgreSQL frozen');
  });

  test('frozen, then every connection cut while statements hang: the pool drops them and reconnects by itself', async () => {
    const load = startLoad(tether, client, subject, INTERVAL_MS);
    await until(() => delivered(load.outcomes) >= 20);
    const before = proxy.stats().accepted;
    proxy.freeze();
    const goneAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, FREEZE_MS));
    const pendingAtBack = load.outcomes.filter((outcome) => outcome.endedAt === undefined);
    const backAt = performance.now();
    proxy.cutAll();
    proxy.thaw();
    await until(() => delivered(load.outcomes, backAt + 500) >= 20 && load.outcomes.some((outcome) => outcome.kind === 'readyz' && outcome.startedAt > backAt + 2500 && outcome.endedAt !== undefined));
    const outcomes = await load.stop();
    await expectBoundedOutage(outcomes, { goneAt, backAt, pendingAtBack }, ledger.knex, 'PostgreSQL frozen then cut');
    // The tokens after the cut came over new connections.
    expect(proxy.stats().accepted).toBeGreaterThan(before);
  });
});

(onPostgres ? describe.skip : describe)('PGlite with its one connection held by a transaction that does not end', () => {
  let database: Database;
  let tether: RunningTether;
  let client: LedgerClient;
  let subject: string;

  beforeAll(async () => {
    database = await openDatabase({ memory: true, timeouts: TIMEOUTS });
    tether = await startTether({ config: config(), database });
    client = new LedgerClient(tether);
    subject = await client.accessToken('worker', ORDERS);
  });

  afterAll(async () => {
    await tether?.close();
    await database?.close();
  });

  test('held for 10 s: 503 + Retry-After within the bound, /readyz 503, then service resumes; no token without its record', async () => {
    const load = startLoad(tether, client, subject, INTERVAL_MS);
    await until(() => delivered(load.outcomes) >= 20);
    const stuck = await holdOnlyConnection(database.knex);
    const goneAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, FREEZE_MS));
    const pendingAtBack = load.outcomes.filter((outcome) => outcome.endedAt === undefined);
    const backAt = performance.now();
    await stuck.release();
    await until(() => delivered(load.outcomes, backAt + 500) >= 20 && load.outcomes.some((outcome) => outcome.kind === 'readyz' && outcome.startedAt > backAt + 2500 && outcome.endedAt !== undefined));
    const outcomes = await load.stop();
    await expectBoundedOutage(outcomes, { goneAt, backAt, pendingAtBack }, database.knex, 'PGlite held');
  });
});

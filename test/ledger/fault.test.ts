import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { jest } from '@jest/globals';
import knexFactory, { type Knex } from 'knex';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import { openTestDatabase } from '../support/database.js';
import { LedgerClient, ORDERS, REPORTS, ledgerConfig } from './ledger_config.js';

/**
 * "No token without a record" under a database failure: while concurrent token requests run over
 * TLS, the database goes away (PGlite: closed; PostgreSQL: the instance's connections terminated and
 * new ones refused, then allowed again). Every token a client received must have its committed issued
 * event; while the database is gone every answer is 503 + Retry-After + temporarily_unavailable, never
 * a token and never a 500; on PostgreSQL the service comes back by itself.
 */

const CONCURRENCY = 8;
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

interface Outcome {
  startedAt: number;
  endedAt: number;
  status: number;
  retryAfter: string | null;
  error: unknown;
  tokenId: string | undefined;
}

/**
 * Runs token requests on CONCURRENCY connections until `stop()` says so; JWT and opaque alternate.
 * `outcomes` fills while it runs, so a test waits for what it needs rather than for a fixed time
 * (a loaded machine is slower, not wrong).
 */
function load(client: LedgerClient, stop: () => boolean): { outcomes: Outcome[]; done: Promise<Outcome[]> } {
  const outcomes: Outcome[] = [];
  const worker = async (index: number) => {
    for (let n = 0; !stop(); n += 1) {
      const opaque = (index + n) % 2 === 1;
      const startedAt = performance.now();
      const { status, headers, body } = await client.token('worker', opaque ? REPORTS : ORDERS);
      const token = body.access_token as string | undefined;
      outcomes.push({
        startedAt,
        endedAt: performance.now(),
        status,
        retryAfter: headers.get('retry-after'),
        error: body.error,
        tokenId: token === undefined ? undefined : opaque ? sha256(token) : decodeJwt(token).jti,
      });
    }
  };
  return { outcomes, done: Promise.all(Array.from({ length: CONCURRENCY }, (_, index) => worker(index))).then(() => outcomes) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `condition` holds, for at most `timeoutMs` (then the assertions that follow report it). */
async function until(condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition() && performance.now() < deadline) await sleep(20);
}

const tokensAmong = (outcomes: Outcome[], after = 0) => outcomes.filter((outcome) => outcome.startedAt > after && outcome.status === 200).length;

function expectOnlyTokensOrUnavailable(outcomes: Outcome[]): void {
  for (const outcome of outcomes) {
    if (outcome.status === 200) {
      expect(outcome.tokenId).toBeDefined();
      continue;
    }
    expect({ status: outcome.status, error: outcome.error, retryAfter: outcome.retryAfter, token: outcome.tokenId })
      .toEqual({ status: 503, error: 'temporarily_unavailable', retryAfter: '1', token: undefined });
  }
}

async function expectEveryTokenRecorded(knex: Knex, outcomes: Outcome[]): Promise<void> {
  const received = outcomes.filter((outcome) => outcome.status === 200).map((outcome) => outcome.tokenId!);
  const recorded = new Set<string>();
  for (let offset = 0; offset < received.length; offset += 500) {
    const rows = await knex('ledger_events').whereIn('token_id', received.slice(offset, offset + 500)).andWhere({ type: 'token.issued' }).select('token_id');
    for (const row of rows) recorded.add(row.token_id as string);
  }
  expect(received.filter((tokenId) => !recorded.has(tokenId))).toEqual([]);
}

const summary = (outcomes: Outcome[]) => outcomes.reduce<Record<number, number>>((counts, outcome) => ({ ...counts, [outcome.status]: (counts[outcome.status] ?? 0) + 1 }), {});

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe.skip : describe)('PGlite closed under load', () => {
  let directory: string;
  let tether: RunningTether | undefined;

  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'tether-fault-'));
  });

  afterEach(async () => {
    await tether?.close();
    await rm(directory, { recursive: true, force: true });
  });

  test('every token received has its committed issued event; after the close only 503 + Retry-After', async () => {
    const database = await openDatabase({ directory: path.join(directory, 'db') });
    tether = await startTether({ config: ledgerConfig(), database });
    const client = new LedgerClient(tether);

    let stopping = false;
    const running = load(client, () => stopping);
    await until(() => tokensAmong(running.outcomes) > 20);
    await database.close();
    const closedAt = performance.now();
    await until(() => running.outcomes.filter((outcome) => outcome.startedAt > closedAt).length > 20);
    stopping = true;
    const outcomes = await running.done;

    const afterClose = outcomes.filter((outcome) => outcome.startedAt > closedAt);
    expect(outcomes.filter((outcome) => outcome.status === 200).length).toBeGreaterThan(10);
    expect(afterClose.length).toBeGreaterThan(10);
    expect(afterClose.every((outcome) => outcome.status === 503)).toBe(true);
    expectOnlyTokensOrUnavailable(outcomes);

    const reopened = await openDatabase({ directory: path.join(directory, 'db') });
    try {
      await expectEveryTokenRecorded(reopened.knex, outcomes);
    } finally {
      await reopened.close();
    }
    process.stdout.write(`PGlite fault: ${JSON.stringify(summary(outcomes))}, ${afterClose.length} after the close\n`);
  });
});

(onPostgres ? describe : describe.skip)('PostgreSQL connections terminated under load', () => {
  let database: Database & { url?: string };
  let admin: Knex;
  let tether: RunningTether;

  beforeAll(async () => {
    // knex reports every refused connection attempt on console.log; the test counts them its own way.
    const log = console.log.bind(console);
    jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
      if (!String(args[0]).startsWith('Acquire connection error')) log(...args);
    });
    database = await openTestDatabase();
    admin = knexFactory({ client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 1 } });
    tether = await startTether({ config: ledgerConfig(), database });
  });

  afterAll(async () => {
    await tether?.close();
    await admin?.raw(`ALTER DATABASE ${databaseName()} WITH ALLOW_CONNECTIONS true`).catch(() => undefined);
    await admin?.destroy();
    await database?.close();
    jest.restoreAllMocks();
  });

  const databaseName = () => new URL(database.url!).pathname.slice(1);

  /** Kills every connection of the instance; with `refuse`, new ones are refused until allowed again. */
  async function cutDatabase(refuse: boolean): Promise<void> {
    if (refuse) await admin.raw(`ALTER DATABASE ${databaseName()} WITH ALLOW_CONNECTIONS false`);
    await admin.raw('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()', [databaseName()]);
  }

  test('terminated connections: in-flight requests fail with 503, the pool reconnects by itself', async () => {
    let stopping = false;
    const running = load(new LedgerClient(tether), () => stopping);
    await until(() => tokensAmong(running.outcomes) > 20);
    for (let round = 0; round < 5; round += 1) {
      await cutDatabase(false);
      await sleep(60);
    }
    const cutEndedAt = performance.now();
    await until(() => tokensAmong(running.outcomes, cutEndedAt + 200) > 10);
    stopping = true;
    const outcomes = await running.done;

    expectOnlyTokensOrUnavailable(outcomes);
    await expectEveryTokenRecorded(database.knex, outcomes);
    // Resumed on its own: tokens again once the terminations stopped.
    expect(outcomes.filter((outcome) => outcome.startedAt > cutEndedAt + 200 && outcome.status === 200).length).toBeGreaterThan(10);
    process.stdout.write(`PostgreSQL terminate: ${JSON.stringify(summary(outcomes))}\n`);
  });

  test('database unreachable for a while: only 503 while it is gone, tokens again when it is back', async () => {
    let stopping = false;
    const running = load(new LedgerClient(tether), () => stopping);
    await until(() => tokensAmong(running.outcomes) > 20);
    await cutDatabase(true);
    const goneAt = performance.now();
    await sleep(500);
    await until(() => running.outcomes.filter((outcome) => outcome.startedAt > goneAt).length > 20);
    const backAt = performance.now();
    await admin.raw(`ALTER DATABASE ${databaseName()} WITH ALLOW_CONNECTIONS true`);
    await until(() => tokensAmong(running.outcomes, backAt + 200) > 10);
    stopping = true;
    const outcomes = await running.done;

    const whileGone = outcomes.filter((outcome) => outcome.startedAt > goneAt && outcome.endedAt < backAt);
    expect(whileGone.length).toBeGreaterThan(10);
    expect(whileGone.filter((outcome) => outcome.status !== 503)).toEqual([]);
    expectOnlyTokensOrUnavailable(outcomes);
    await expectEveryTokenRecorded(database.knex, outcomes);
    expect(outcomes.filter((outcome) => outcome.startedAt > backAt + 200 && outcome.status === 200).length).toBeGreaterThan(10);
    process.stdout.write(`PostgreSQL unreachable: ${JSON.stringify(summary(outcomes))}, ${whileGone.length} while gone\n`);
  });
});

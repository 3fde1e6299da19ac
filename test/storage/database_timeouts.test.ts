import knexFactory, { type Knex } from 'knex';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { createEmptyPostgresDatabase, openTestDatabase } from '../support/database.js';
import { startFreezableProxy, type FreezableProxy } from './freezable_proxy.js';

/**
 * Each bound on a database wait, alone (issue 13 §4; the outage test has them together under load).
 * Waits are checked by what settled before something else happened (a freeze ended, a lock was
 * released), never by elapsed time.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const TIMEOUTS = { statementTimeout: 300, acquireTimeout: 300, connectTimeout: 500 };

/** Settles `promise` into its outcome, so a test can look at it later. */
function outcomeOf(promise: Promise<unknown>): { settled: boolean; error: Error | undefined; done: Promise<void> } {
  const outcome = { settled: false, error: undefined as Error | undefined, done: Promise.resolve() };
  outcome.done = promise.then(
    () => { outcome.settled = true; },
    (error: Error) => { outcome.settled = true; outcome.error = error; },
  );
  return outcome;
}

/** Holds the database's connections in open transactions until released. */
function holdConnections(knex: Knex, count: number): { ready: Promise<void>; release(): Promise<void> } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const started: Promise<void>[] = [];
  const holders = Array.from({ length: count }, () => knex.transaction(async (trx) => {
    let ready!: () => void;
    started.push(new Promise<void>((resolve) => {
      ready = resolve;
    }));
    await trx.raw('select 1');
    ready();
    await released;
  }));
  return {
    ready: (async () => {
      while (started.length < count) await sleep(5);
      await Promise.all(started);
    })(),
    async release() {
      release();
      await Promise.all(holders);
    },
  };
}

test('PGlite: a query waits for the one connection at most acquireTimeout and fails before the transaction holding it ends; fine again after', async () => {
  const database = await openDatabase({ memory: true, timeouts: TIMEOUTS });
  try {
    const held = holdConnections(database.knex, 1);
    await held.ready;
    const waiting = outcomeOf(database.knex.raw('select 1'));
    // Held ten times longer than the acquire timeout; the waiting query is refused meanwhile.
    for (let slice = 0; slice < 30 && !waiting.settled; slice += 1) await sleep(100);
    const settledWhileHeld = waiting.settled;
    await held.release();
    await waiting.done;
    expect(settledWhileHeld).toBe(true);
    expect(waiting.error?.name).toBe('KnexTimeoutError');
    expect((await database.knex.raw('select 1 as one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await database.close();
  }
});

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe : describe.skip)('PostgreSQL', () => {
  let ledger: Database & { url?: string };

  beforeAll(async () => {
    ledger = await openTestDatabase();
  });

  afterAll(() => ledger?.close());

  test('the server-side bounds reach every session: statement_timeout, and twice that for idle_in_transaction_session_timeout', async () => {
    const database = await openDatabase({ url: ledger.url!, timeouts: { statementTimeout: 1500, acquireTimeout: 1000, connectTimeout: 1000 } });
    try {
      const { rows } = await database.knex.raw("select current_setting('statement_timeout') as statement, current_setting('idle_in_transaction_session_timeout') as idle");
      expect(rows).toEqual([{ statement: '1500ms', idle: '3s' }]);
    } finally {
      await database.close();
    }
  });

  test('a statement that runs too long is cancelled by the server (57014); the connection stays usable', async () => {
    const database = await openDatabase({ url: ledger.url!, timeouts: TIMEOUTS });
    try {
      await expect(database.knex.raw('select pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
      expect((await database.knex.raw('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await database.close();
    }
  });

  test('a transaction left idle is ended by the server; the pool replaces the connection', async () => {
    const database = await openDatabase({ url: ledger.url!, timeouts: TIMEOUTS });
    try {
      const idle = database.knex.transaction(async (trx) => {
        await trx.raw('select 1');
        await sleep(2000);
        await trx.raw('select 1');
      });
      await expect(idle).rejects.toThrow();
      expect((await database.knex.raw('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await database.close();
    }
  });

  test('the pool is full: a query waits acquireTimeout and fails before any connection is given back', async () => {
    const database = await openDatabase({ url: ledger.url!, timeouts: TIMEOUTS });
    try {
      // Transactions idle longer than 2 × statementTimeout are ended by the server: hold them shorter.
      const held = holdConnections(database.knex, 10);
      await held.ready;
      const waiting = outcomeOf(database.knex.raw('select 1'));
      for (let slice = 0; slice < 5 && !waiting.settled; slice += 1) await sleep(100);
      const settledWhileHeld = waiting.settled;
      await held.release();
      await waiting.done;
      expect(settledWhileHeld).toBe(true);
      expect(waiting.error?.name).toBe('KnexTimeoutError');
    } finally {
      await database.close();
    }
  });

  /** The database behind a freezable proxy, one query answered (its backend's pid), then frozen; cleaned up after `check`. */
  async function frozenAfterOneQuery(check: (frozen: { proxy: FreezableProxy; database: Database; before: number }) => Promise<void>): Promise<void> {
    const target = new URL(ledger.url!);
    const proxy = await startFreezableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const database = await openDatabase({ url: proxy.proxiedUrl(ledger.url!), timeouts: TIMEOUTS });
    try {
      const [{ pid: before }] = (await database.knex.raw('select pg_backend_pid() as pid')).rows;
      proxy.freeze();
      await check({ proxy, database, before });
    } finally {
      proxy.thaw();
      await database.close();
      await proxy.close();
    }
  }

  test('frozen mid-query: the query fails on the client side before the thaw; its connection is dropped and the next query gets a new one', async () => {
    await frozenAfterOneQuery(async ({ proxy, database, before }) => {
      const frozen = outcomeOf(database.knex.raw('select pg_backend_pid() as pid'));
      for (let slice = 0; slice < 50 && !frozen.settled; slice += 1) await sleep(100);
      const settledWhileFrozen = frozen.settled;
      proxy.thaw();
      await frozen.done;
      expect(settledWhileFrozen).toBe(true);
      expect(frozen.error?.message).toMatch(/Query read timeout$/);

      const [{ pid: after }] = (await database.knex.raw('select pg_backend_pid() as pid')).rows;
      expect(after).not.toBe(before);
      // The abandoned backend saw its client go and ended.
      let lingering = 1;
      for (let attempt = 0; attempt < 100 && lingering > 0; attempt += 1) {
        lingering = Number((await ledger.knex.raw('select count(*) as count from pg_stat_activity where pid = ?', [before])).rows[0].count);
        if (lingering > 0) await sleep(50);
      }
      expect(lingering).toBe(0);
    });
  });

  test('a query given in the same turn as the timeout (the database back by then) gets a new connection, not the abandoned one', async () => {
    // The CI failure this reproduces: on a starved machine the test's next query ran in the same
    // turn of the event loop as the timeout, before the abandoned socket's close was reported, and
    // the pool handed it the closed connection ("Connection terminated unexpectedly").
    await frozenAfterOneQuery(async ({ proxy, database, before }) => {
      const next = await database.knex.raw('select pg_backend_pid() as pid').then(
        () => { throw new Error('the frozen query answered'); },
        (error: Error) => {
          expect(error.message).toMatch(/Query read timeout$/);
          // Still in the turn of the timeout: thaw and ask again at once.
          proxy.thaw();
          return database.knex.raw('select pg_backend_pid() as pid');
        },
      );
      expect(next.rows[0].pid).not.toBe(before);
    });
  });

  test('a new connection to a frozen server fails within connectTimeout, before the thaw', async () => {
    const target = new URL(ledger.url!);
    const proxy = await startFreezableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    proxy.freeze();
    const database = await openDatabase({ url: proxy.proxiedUrl(ledger.url!), timeouts: TIMEOUTS });
    try {
      const connecting = outcomeOf(database.knex.raw('select 1'));
      for (let slice = 0; slice < 50 && !connecting.settled; slice += 1) await sleep(100);
      const settledWhileFrozen = connecting.settled;
      proxy.thaw();
      await connecting.done;
      expect(settledWhileFrozen).toBe(true);
      expect(connecting.error).toBeDefined();
      expect((await database.knex.raw('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      proxy.thaw();
      await database.close();
      await proxy.close();
    }
  });

  test('migrations are not cut short by the request timeouts: waiting for another instance\'s migration lock longer than statementTimeout', async () => {
    const empty = await createEmptyPostgresDatabase(process.env.DATABASE_URL!);
    const other = knexFactory({ client: 'pg', connection: empty.url, pool: { min: 0, max: 1 } });
    const database = await openDatabase({ url: empty.url, timeouts: TIMEOUTS });
    try {
      // Another instance is migrating: it holds the migration lock (storage/migrate.ts) for a while.
      const holder = other.transaction(async (trx) => {
        await trx.raw('select pg_advisory_xact_lock(7301001)');
        await sleep(1500);
      });
      await sleep(200);
      const migrated = await migrateToLatest(database.knex);
      await holder;
      expect(migrated.applied.length).toBeGreaterThan(0);
      expect((await database.knex.raw("select count(*)::int as count from ledger_events")).rows).toEqual([{ count: 0 }]);
    } finally {
      await database.close();
      await other.destroy();
      await empty.drop();
    }
  });
});

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';

import { databaseTimeoutsMs } from '../config/schema.js';
import type { KnexLog } from '../observability/library_logs.js';
import { lockDatabaseDirectory } from './directory_lock.js';
import { createInMemoryPglite } from './pglite_memory.js';
import { compiledPgliteModule } from './pglite_wasm.js';
import { startGrowthAnalysis } from './pglite_analyze.js';
import { giveBack, leaseOf, rememberPristine, takeIdle } from './pglite_reuse.js';
import { createPgliteKnex } from './pglite_knex.js';
import { migratedSnapshotOrUndefined } from './pglite_snapshot.js';
import { extractDataDirTarball } from './tar_extract.js';

/** An open database: PostgreSQL through `pg`, or embedded PGlite. */
export interface Database {
  knex: Knex;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

/**
 * The bounds on waiting for the database, in milliseconds (config `database`, through databaseTimeoutsMs). PostgreSQL gets all of
 * them; PGlite, which runs in this thread on one connection, only the acquire timeout: a query waits
 * for a transaction that holds the connection at most that long.
 */
export interface DatabaseTimeouts {
  statementTimeout: number;
  acquireTimeout: number;
  connectTimeout: number;
}

/** Where the data lives; exactly one of the three. */
export interface OpenDatabaseOptions {
  /** `postgres://…` — a PostgreSQL server, through a `pg` connection pool. */
  url?: string;
  /** Embedded PGlite persisted in this folder (created, and seeded with the migrated schema, if new). */
  directory?: string;
  /** Embedded PGlite in memory, starting from the migrated schema. */
  memory?: boolean;
  /** Default: the configuration's defaults (config/schema.ts DATABASE_DEFAULTS). */
  timeouts?: DatabaseTimeouts;
  /** Where knex's own warnings go (observability/library_logs.ts knexLogTo); default: stderr, one plain line each. */
  log?: KnexLog;
}

/** Pool sizing for PostgreSQL; migrateToLatest needs at least two connections (one holds its lock). */
const POSTGRES_POOL = { min: 0, max: 10 };

/**
 * Opens the database. Does not migrate (see `migrateToLatest`), but embedded databases that start
 * empty are seeded from a cached, already-migrated snapshot, because a fresh PGlite initdb takes
 * seconds and loading the snapshot a fraction of one. If the snapshot cannot be built (say a
 * migration is broken), they start empty instead and the caller's migration reports the problem.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const chosen = [options.url !== undefined, options.directory !== undefined, options.memory === true];
  if (chosen.filter(Boolean).length !== 1) {
    throw new Error('openDatabase needs exactly one of url, directory or memory');
  }
  const timeouts = options.timeouts ?? databaseTimeoutsMs();
  const log = options.log ?? KNEX_LOG;
  if (options.url !== undefined) return openPostgres(options.url, timeouts, log);
  if (options.directory !== undefined) return openPgliteDirectory(options.directory, timeouts, log);
  return openPgliteMemory(timeouts, log);
}

/**
 * knex prints its warnings (e.g. "Acquire connection error" for every failed attempt while the
 * database is down) with console.log; stdout is for command output (`tether tokens list --json`),
 * so they go to stderr. The failures themselves reach callers as errors (503 on the token path).
 */
const KNEX_LOG: KnexLog = {
  // First line only: knex passes an error's stack, and the failure itself reaches the caller (the CLI
  // explains it in one line; cli/server_errors.ts).
  warn: (message: unknown) => process.stderr.write(`knex: ${firstLine(message)}\n`),
  error: (message: unknown) => process.stderr.write(`knex: ${firstLine(message)}\n`),
  deprecate: (method: string, alternative: string) => process.stderr.write(`knex: ${method} is deprecated, use ${alternative}\n`),
  debug: () => undefined,
};

function firstLine(message: unknown): string {
  return String(message).split('\n', 1)[0]!;
}

/** The client-side wait for an answer exceeds the server's statement_timeout by this much, so that normally the server cancels first. */
const QUERY_TIMEOUT_GRACE_MS = 1000;
/** TCP keepalive probes start after this much silence: a connection to a host that vanished dies in about a minute, not hours. */
const KEEPALIVE_DELAY_MS = 10_000;

/**
 * pg connection settings with every wait bounded:
 * - statement_timeout: the server cancels a statement (a lock wait included) that runs too long;
 * - idle_in_transaction_session_timeout: the server ends a session that holds a transaction open
 *   and idle (a Tether instance frozen mid-revocation would otherwise keep its locks);
 * - query_timeout: the client stops waiting for an answer even when the server cannot send one
 *   (frozen, partitioned) — the only bound that holds then;
 * - connectionTimeoutMillis: opening a connection, TLS and authentication included;
 * - keepAlive: the kernel notices a peer that is gone without closing the connection.
 */
function postgresConnection(url: string, timeouts: DatabaseTimeouts): Knex.PgConnectionConfig & Record<string, unknown> {
  return {
    connectionString: url,
    statement_timeout: timeouts.statementTimeout,
    idle_in_transaction_session_timeout: 2 * timeouts.statementTimeout,
    query_timeout: timeouts.statementTimeout + QUERY_TIMEOUT_GRACE_MS,
    connectionTimeoutMillis: timeouts.connectTimeout,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
  };
}

function openPostgres(url: string, timeouts: DatabaseTimeouts, log: KnexLog): Database {
  const knex = knexFactory({
    client: 'pg',
    connection: postgresConnection(url, timeouts),
    pool: { ...POSTGRES_POOL, afterCreate: discardOnQueryTimeout },
    acquireConnectionTimeout: timeouts.acquireTimeout,
    log,
  });
  return { knex, kind: 'postgres', close: () => knex.destroy() };
}

/** The parts of a pg Client this module touches. */
interface PgClient {
  query(...args: unknown[]): unknown;
  connection: { stream: { destroy(error?: Error): void } };
  /** knex's mark of a connection that ended: its pool discards a marked connection instead of handing it out. */
  __knex__disposed?: unknown;
}

/**
 * pg's query_timeout answers the caller but leaves the abandoned query active on its connection: the
 * next query given that connection would queue behind it, and after a freeze the server would still
 * answer it. A connection whose query timed out is therefore marked disposed and closed at once; the
 * pool opens a fresh one when the next query needs it, so service comes back by itself when the
 * database does. (A connection the server or the network cut is already discarded that way.)
 */
function discardOnQueryTimeout(connection: PgClient, done: (error: Error | null, connection: PgClient) => void): void {
  const query = connection.query.bind(connection);
  connection.query = (...args: unknown[]) => {
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      args[args.length - 1] = (error: Error | null, result: unknown) => {
        if (error?.message === 'Query read timeout') {
          // Marked now: knex marks it itself only when the socket's close is reported, a turn of the
          // event loop later, and a query given in between (in this turn) would get this connection.
          connection.__knex__disposed = error;
          connection.connection.stream.destroy();
        }
        (callback as (error: Error | null, result: unknown) => void)(error, result);
      };
    }
    return query(...args);
  };
  done(null, connection);
}

/**
 * An in-memory database: an emptied one given back by an earlier owner in this process if there is
 * one, else a new one from the snapshot (pglite_reuse.ts). Its owner holds a lease on it, and
 * `close()` gives it back.
 */
async function openPgliteMemory(timeouts: DatabaseTimeouts, log: KnexLog): Promise<Database> {
  let pglite = takeIdle();
  if (pglite === undefined) {
    pglite = await createInMemoryPglite();
    await rememberPristine(pglite);
  }
  const owned = pglite;
  const lease = leaseOf(owned);
  return wrapPglite(lease.pglite, timeouts, log, {
    leavesPgliteOpen: true,
    afterClose: async () => {
      await lease.end();
      await giveBack(owned);
    },
  });
}

/** Starts reading the snapshot and compiling PGlite ahead of `openDatabase({ memory: true })`. */
export { prepareInMemoryPglite as prepareInMemoryDatabase } from './pglite_memory.js';

/**
 * PGlite on a data folder, with the precompiled module (storage/pglite_wasm.ts). PostgreSQL's default
 * 128 MB of shared buffers stay: 64 MB took ~150 ms off a start but cost 15 % of the embedded server's
 * tokens per second under load (blocks re-read through PGlite's file system; docs/benchmarks.md).
 */
async function openPgliteDirectory(directory: string, timeouts: DatabaseTimeouts, log: KnexLog): Promise<Database> {
  const absolute = resolve(directory);
  mkdirSync(dirname(absolute), { recursive: true });
  const lock = lockDatabaseDirectory(absolute);
  try {
    if (!existsSync(join(absolute, 'PG_VERSION'))) await seedDirectory(absolute, log);
    const pgliteWasmModule = await compiledPgliteModule();
    const pglite = await PGlite.create({
      dataDir: absolute,
      ...(pgliteWasmModule ? { pgliteWasmModule } : {}),
    });
    return wrapPglite(pglite, timeouts, log, { afterClose: () => lock.release() });
  } catch (error) {
    lock.release();
    throw error;
  }
}

/**
 * Fills a new data directory from the snapshot. The tarball is unpacked into a sibling folder and
 * renamed into place, so an interrupted first start never leaves a half-written database behind.
 * Without a snapshot (or if unpacking fails) nothing happens here and PGlite runs initdb itself.
 */
async function seedDirectory(directory: string, log: KnexLog): Promise<void> {
  const snapshot = await migratedSnapshotOrUndefined();
  if (snapshot === undefined) return;
  const staging = join(dirname(directory), `.${basename(directory)}.seeding-${randomBytes(6).toString('hex')}`);
  try {
    extractDataDirTarball(snapshot, staging);
    // rename(2) replaces the target only if it is missing or an empty folder.
    await rename(staging, directory);
  } catch (error) {
    log.warn(`could not seed ${directory} from the snapshot, PGlite will initialize it: ${describe(error)}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * knex over a PGlite, with the growth analysis single-user PostgreSQL needs (it has no autovacuum:
 * pglite_analyze.ts). `close()` stops both, then runs `afterClose` (release the folder's lock, or
 * give an in-memory database back); without `leavesPgliteOpen` it closes the PGlite first.
 */
function wrapPglite(
  pglite: PGlite,
  timeouts: DatabaseTimeouts,
  log: KnexLog,
  ending: { leavesPgliteOpen?: boolean; afterClose?: () => Promise<void> | void } = {},
): Database {
  const knex = createPgliteKnex(pglite, { acquireTimeoutMs: timeouts.acquireTimeout, log, leavesPgliteOpen: ending.leavesPgliteOpen });
  const analysis = startGrowthAnalysis(knex, { warn: (message) => log.warn(message) });
  return {
    knex,
    kind: 'pglite',
    close: async () => {
      try {
        await analysis.stop();
        await knex.destroy();
        // knex closes PGlite only if it ever handed out the connection.
        if (!ending.leavesPgliteOpen && !pglite.closed) await pglite.close();
      } finally {
        await ending.afterClose?.();
      }
    },
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';

import { lockDatabaseDirectory, type DirectoryLock } from './directory_lock.js';
import { createInMemoryPglite } from './pglite_memory.js';
import { createPgliteKnex } from './pglite_knex.js';
import { migratedSnapshotOrUndefined } from './pglite_snapshot.js';
import { extractDataDirTarball } from './tar_extract.js';

/** An open database: PostgreSQL through `pg`, or embedded PGlite. */
export interface Database {
  knex: Knex;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

/** Where the data lives; exactly one of the three. */
export interface OpenDatabaseOptions {
  /** `postgres://…` — a PostgreSQL server, through a `pg` connection pool. */
  url?: string;
  /** Embedded PGlite persisted in this folder (created, and seeded with the migrated schema, if new). */
  directory?: string;
  /** Embedded PGlite in memory, starting from the migrated schema. */
  memory?: boolean;
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
  if (options.url !== undefined) return openPostgres(options.url);
  if (options.directory !== undefined) return openPgliteDirectory(options.directory);
  return openPgliteMemory();
}

/**
 * knex prints its warnings (e.g. "Acquire connection error" for every failed attempt while the
 * database is down) with console.log; stdout is for command output (`tether tokens list --json`),
 * so they go to stderr. The failures themselves reach callers as errors (503 on the token path).
 */
const KNEX_LOG = {
  warn: (message: unknown) => process.stderr.write(`knex: ${String(message)}\n`),
  error: (message: unknown) => process.stderr.write(`knex: ${String(message)}\n`),
  deprecate: (method: string, alternative: string) => process.stderr.write(`knex: ${method} is deprecated, use ${alternative}\n`),
  debug: () => undefined,
};

function openPostgres(url: string): Database {
  const knex = knexFactory({ client: 'pg', connection: url, pool: POSTGRES_POOL, log: KNEX_LOG });
  return { knex, kind: 'postgres', close: () => knex.destroy() };
}

async function openPgliteMemory(): Promise<Database> {
  return wrapPglite(await createInMemoryPglite());
}

/** Starts reading the snapshot and compiling PGlite ahead of `openDatabase({ memory: true })`. */
export { prepareInMemoryPglite as prepareInMemoryDatabase } from './pglite_memory.js';

async function openPgliteDirectory(directory: string): Promise<Database> {
  const absolute = resolve(directory);
  mkdirSync(dirname(absolute), { recursive: true });
  const lock = lockDatabaseDirectory(absolute);
  try {
    if (!existsSync(join(absolute, 'PG_VERSION'))) await seedDirectory(absolute);
    const pglite = await PGlite.create({ dataDir: absolute });
    return wrapPglite(pglite, lock);
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
async function seedDirectory(directory: string): Promise<void> {
  const snapshot = await migratedSnapshotOrUndefined();
  if (snapshot === undefined) return;
  const staging = join(dirname(directory), `.${basename(directory)}.seeding-${randomBytes(6).toString('hex')}`);
  try {
    extractDataDirTarball(snapshot, staging);
    // rename(2) replaces the target only if it is missing or an empty folder.
    await rename(staging, directory);
  } catch (error) {
    process.emitWarning(`tether: could not seed ${directory} from the snapshot, PGlite will initialize it: ${describe(error)}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function wrapPglite(pglite: PGlite, lock?: DirectoryLock): Database {
  const knex = createPgliteKnex(pglite);
  return {
    knex,
    kind: 'pglite',
    close: async () => {
      try {
        await knex.destroy();
        // knex closes PGlite only if it ever handed out the connection.
        if (!pglite.closed) await pglite.close();
      } finally {
        lock?.release();
      }
    },
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

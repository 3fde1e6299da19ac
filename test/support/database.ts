import { randomBytes } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';

import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';

/**
 * A fresh, migrated database for one test file.
 *
 * With `DATABASE_URL` set: a new, uniquely named database on that PostgreSQL server (its URL is in
 * `url`, for tests that need a second pool, i.e. a second "instance"); `close()` drops it.
 * Otherwise: an in-memory PGlite loaded from the cached migrated snapshot.
 */
export async function openTestDatabase(): Promise<Database & { url?: string }> {
  const serverUrl = process.env.DATABASE_URL;
  if (serverUrl !== undefined && serverUrl !== '') return openPostgresTestDatabase(serverUrl);
  const database = await openDatabase({ memory: true });
  // Normally a no-op (the snapshot is migrated); if the snapshot could not be built this reports why.
  await migrateToLatest(database.knex);
  return database;
}

async function openPostgresTestDatabase(serverUrl: string): Promise<Database & { url: string }> {
  const name = `tether_t_${randomBytes(6).toString('hex')}`;
  await onServer(serverUrl, `create database ${name}`);
  const url = withDatabaseName(serverUrl, name);
  const database = await openDatabase({ url });
  try {
    await migrateToLatest(database.knex);
  } catch (error) {
    await database.close();
    await onServer(serverUrl, `drop database if exists ${name} with (force)`);
    throw error;
  }
  return {
    ...database,
    url,
    close: async () => {
      try {
        await database.close();
      } finally {
        // FORCE: a test that leaked a connection must not leave its database behind.
        await onServer(serverUrl, `drop database if exists ${name} with (force)`);
      }
    },
  };
}

/**
 * An empty (unmigrated) database on the `DATABASE_URL` server, for tests of migration itself; the
 * caller must call `drop()`. Only meaningful with a PostgreSQL server, hence no PGlite variant.
 */
export async function createEmptyPostgresDatabase(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `tether_t_${randomBytes(6).toString('hex')}`;
  await onServer(serverUrl, `create database ${name}`);
  return {
    url: withDatabaseName(serverUrl, name),
    drop: () => onServer(serverUrl, `drop database if exists ${name} with (force)`),
  };
}

/** Runs one administrative statement (CREATE/DROP DATABASE cannot run in a transaction). */
async function onServer(serverUrl: string, sql: string): Promise<void> {
  const admin = knexFactory({ client: 'pg', connection: serverUrl, pool: { min: 0, max: 1 } });
  try {
    await admin.raw(sql);
  } finally {
    await admin.destroy();
  }
}

function withDatabaseName(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Holds PGlite's only connection in an open transaction (a stuck caller), as a frozen database
 * looks to Tether; resolves once it is held. `release()` ends the transaction.
 */
export async function holdOnlyConnection(knex: Knex): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let holding!: () => void;
  const isHolding = new Promise<void>((resolve) => {
    holding = resolve;
  });
  const stuck = knex.transaction(async (trx) => {
    await trx.raw('select 1');
    holding();
    await held;
  });
  await isHolding;
  return {
    async release() {
      release();
      await stuck;
    },
  };
}

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { openDatabase } from '../../src/storage/database.js';
import { pendingMigrations } from '../../src/storage/migrate.js';
import { snapshotFilePath } from '../../src/storage/pglite_snapshot.js';

// These exercise embedded PGlite specifically, so they run the same with or without DATABASE_URL.

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: Math.round(performance.now() - started) };
}

describe('openDatabase({ memory })', () => {
  it('starts from the cached migrated snapshot; each database is separate', async () => {
    const first = await timed(() => openDatabase({ memory: true }));
    const second = await timed(() => openDatabase({ memory: true }));
    try {
      expect(first.value.kind).toBe('pglite');
      expect(existsSync(snapshotFilePath())).toBe(true);
      expect(await pendingMigrations(second.value.knex)).toEqual([]);

      await first.value.knex('server_secrets').insert({ name: 'only-in-first', secret: 'x' });
      expect(await second.value.knex('server_secrets').where({ name: 'only-in-first' }).first()).toBeUndefined();
      // Timing is reported, not asserted: it depends on the machine and on what else runs.
      console.info(`in-memory PGlite from snapshot: first open ${first.ms} ms, second open ${second.ms} ms`);
    } finally {
      await first.value.close();
      await second.value.close();
    }
  });

  it('shares no file bytes between databases: pages one writes to disk never reach one opened later', async () => {
    // Every in-memory database is filled from the same snapshot bytes (pglite_memory.ts); if a file
    // of one were a view of them, the pages it writes back in place (a catalog page changed by
    // CREATE TABLE, written out by CHECKPOINT) would be what the next database starts from.
    const writer = await openDatabase({ memory: true });
    try {
      await writer.knex.raw('CREATE TABLE written_by_first (id int primary key)');
      await writer.knex.raw('INSERT INTO written_by_first SELECT generate_series(1, 2000)');
      await writer.knex('server_secrets').insert({ name: 'checkpointed', secret: 'x' });
      await writer.knex.raw('CHECKPOINT');
      expect(Number((await writer.knex.raw('SELECT count(*) AS n FROM written_by_first')).rows[0].n)).toBe(2000);
    } finally {
      await writer.close();
    }
    const later = await openDatabase({ memory: true });
    try {
      expect((await later.knex.raw("SELECT to_regclass('written_by_first') AS t")).rows[0].t).toBeNull();
      expect(await later.knex('server_secrets').where({ name: 'checkpointed' }).first()).toBeUndefined();
      expect(await pendingMigrations(later.knex)).toEqual([]);
      // The catalog is whole: a table can still be made and used.
      await later.knex.raw('CREATE TABLE written_by_first (id int primary key)');
      await later.knex.raw('INSERT INTO written_by_first VALUES (1)');
    } finally {
      await later.close();
    }
  });
});

describe('openDatabase({ directory })', () => {
  let parent: string;

  beforeEach(() => {
    parent = mkdtempSync(join(tmpdir(), 'tether-db-test-'));
  });

  afterEach(() => {
    rmSync(parent, { recursive: true, force: true });
  });

  it('creates a new directory already migrated, and keeps its data when reopened', async () => {
    const directory = join(parent, 'nested', 'db');
    const created = await timed(() => openDatabase({ directory }));
    try {
      expect(await pendingMigrations(created.value.knex)).toEqual([]);
      await created.value.knex('server_secrets').insert({ name: 'kept', secret: 'value' });
    } finally {
      await created.value.close();
    }

    const reopened = await timed(() => openDatabase({ directory }));
    try {
      expect(await reopened.value.knex('server_secrets').where({ name: 'kept' }).first()).toMatchObject({ secret: 'value' });
      console.info(`PGlite directory: first open (seeded from snapshot) ${created.ms} ms, reopen ${reopened.ms} ms`);
    } finally {
      await reopened.value.close();
    }
  });

  it('refuses a second open of a directory in use, and frees it on close', async () => {
    const directory = join(parent, 'db');
    const database = await openDatabase({ directory });
    try {
      await expect(openDatabase({ directory })).rejects.toThrow(/in use by process/);
    } finally {
      await database.close();
    }
    expect(existsSync(`${directory}.lock`)).toBe(false);
    const again = await openDatabase({ directory });
    await again.close();
  });
});

describe('openDatabase options', () => {
  it('needs exactly one of url, directory, memory', async () => {
    await expect(openDatabase({})).rejects.toThrow(/exactly one/);
    await expect(openDatabase({ memory: true, directory: '/tmp/x' })).rejects.toThrow(/exactly one/);
  });
});

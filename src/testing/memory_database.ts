/**
 * The harness's database: an in-memory PGlite loaded from the migrated snapshot, opened as fast as
 * PGlite allows.
 *
 * Measured (2 vCPU): `openDatabase({ memory: true })` spends ~70 ms gunzipping the snapshot on every
 * call and, in a fresh process, ~100 ms more compiling PGlite's 9 MB WebAssembly module after the
 * snapshot has been read. Here both are done once per process and shared as immutable values (a
 * `Blob` and a `WebAssembly.Module`), and the compile runs on V8's background threads while the
 * snapshot is read and unpacked. Nothing mutable is shared: every call gets its own PGlite.
 *
 * PostgreSQL's default 128 MB of shared buffers are zeroed at every start (~70 ms here); a test
 * database of a few hundred rows needs a fraction of that.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { openDatabase, type Database } from '../storage/database.js';
import { createPgliteKnex } from '../storage/pglite_knex.js';
import { migratedSnapshot } from '../storage/pglite_snapshot.js';

/** A harness database, and whether it already holds the current schema (it does when loaded from the snapshot). */
export interface MemoryDatabase {
  database: Database;
  migrated: boolean;
}

type WasmModule = NonNullable<PGliteOptions['pgliteWasmModule']>;
// The project compiles without the DOM library, which is where TypeScript declares WebAssembly.
const { WebAssembly: wasm } = globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule> } };

/** Enough for the harness's tables; PostgreSQL's minimum is 128 kB. */
const SHARED_BUFFERS = '16MB';

let snapshotBlob: Promise<Blob | undefined> | undefined;
let compiledPglite: Promise<WasmModule | undefined> | undefined;

/**
 * Starts reading the snapshot and compiling PGlite without waiting, so that a caller can overlap
 * them with its own start-up work (imports, certificates). Safe to call any number of times.
 */
export function prepareMemoryDatabase(): void {
  snapshotBlob ??= loadSnapshotBlob();
  compiledPglite ??= compilePgliteModule();
}

/**
 * Opens a fresh in-memory database. Without a usable snapshot (it could not be built) it falls back
 * to `openDatabase({ memory: true })`, which starts empty; `migrated` is then false.
 */
export async function openMemoryDatabase(): Promise<MemoryDatabase> {
  prepareMemoryDatabase();
  const [snapshot, pgliteWasmModule] = await Promise.all([snapshotBlob!, compiledPglite!]);
  if (snapshot === undefined) return { database: await openDatabase({ memory: true }), migrated: false };
  const pglite = await PGlite.create({
    loadDataDir: snapshot,
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${SHARED_BUFFERS}`],
    ...(pgliteWasmModule ? { pgliteWasmModule } : {}),
  });
  return { database: wrap(pglite), migrated: true };
}

async function loadSnapshotBlob(): Promise<Blob | undefined> {
  try {
    return new Blob([(await migratedSnapshot()) as Uint8Array<ArrayBuffer>]);
  } catch {
    // A failed build must not poison later attempts; openDatabase reports the cause as a warning.
    snapshotBlob = undefined;
    return undefined;
  }
}

/** PGlite compiles its module itself when none is given, so a failure here only costs the head start. */
async function compilePgliteModule(): Promise<WasmModule | undefined> {
  try {
    const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
    return await wasm.compile(await readFile(join(dirname(entry), 'pglite.wasm')));
  } catch {
    compiledPglite = undefined;
    return undefined;
  }
}

function wrap(pglite: PGlite): Database {
  const knex = createPgliteKnex(pglite);
  return {
    knex,
    kind: 'pglite',
    close: async () => {
      await knex.destroy();
      // knex closes PGlite only if it ever handed out the connection.
      if (!pglite.closed) await pglite.close();
    },
  };
}

/**
 * In-memory PGlite loaded from the migrated snapshot, opened as fast as PGlite allows (tests and the
 * in-process harness open one per Tether).
 *
 * Measured (2 vCPU): gunzipping the snapshot costs ~70 ms a call and, in a fresh process, compiling
 * PGlite's 9 MB WebAssembly module ~100 ms more. Here both are done once per process and shared as
 * immutable values (a `Blob` and a `WebAssembly.Module`), and the compile runs on V8's background
 * threads while the snapshot is read and unpacked. Nothing mutable is shared: every call gets its own
 * PGlite.
 *
 * PostgreSQL's default 128 MB of shared buffers are zeroed at every start (~70 ms here); a test
 * database of a few hundred rows needs a fraction of that.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { migratedSnapshotOrUndefined } from './pglite_snapshot.js';

type WasmModule = NonNullable<PGliteOptions['pgliteWasmModule']>;
// The project compiles without the DOM library, which is where TypeScript declares WebAssembly.
const { WebAssembly: wasm } = globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule> } };

/** Enough for a test's tables; PostgreSQL's minimum is 128 kB. */
const SHARED_BUFFERS = '16MB';

let snapshotBlob: Promise<Blob | undefined> | undefined;
let compiledPglite: Promise<WasmModule | undefined> | undefined;

/**
 * Starts reading the snapshot and compiling PGlite without waiting, so that a caller can overlap
 * them with its own start-up work (imports, certificates). Safe to call any number of times.
 */
export function prepareInMemoryPglite(): void {
  snapshotBlob ??= loadSnapshotBlob();
  compiledPglite ??= compilePgliteModule();
}

/**
 * A fresh in-memory PGlite holding the migrated snapshot, or an empty one when no snapshot could be
 * built (a process warning says why, and the caller's migration reports the cause).
 */
export async function createInMemoryPglite(): Promise<PGlite> {
  prepareInMemoryPglite();
  const pending = snapshotBlob!;
  const [snapshot, pgliteWasmModule] = await Promise.all([pending, compiledPglite!]);
  if (snapshot === undefined) {
    // A failed build must not poison later opens in this process: the next one tries again.
    if (snapshotBlob === pending) snapshotBlob = undefined;
    return PGlite.create();
  }
  return PGlite.create({
    loadDataDir: snapshot,
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${SHARED_BUFFERS}`],
    ...(pgliteWasmModule ? { pgliteWasmModule } : {}),
  });
}

async function loadSnapshotBlob(): Promise<Blob | undefined> {
  const snapshot = await migratedSnapshotOrUndefined();
  return snapshot && new Blob([snapshot as Uint8Array<ArrayBuffer>]);
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

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
import { PGlite } from '@electric-sql/pglite';
import { migratedSnapshotOrUndefined } from './pglite_snapshot.js';
import { compiledPgliteModule } from './pglite_wasm.js';

/** Enough for a test's tables; PostgreSQL's minimum is 128 kB. */
const SHARED_BUFFERS = '16MB';

let snapshotBlob: Promise<Blob | undefined> | undefined;

/**
 * Starts reading the snapshot and compiling PGlite without waiting, so that a caller can overlap
 * them with its own start-up work (imports, certificates). Safe to call any number of times.
 */
export function prepareInMemoryPglite(): void {
  snapshotBlob ??= loadSnapshotBlob();
  void compiledPgliteModule();
}

/**
 * A fresh in-memory PGlite holding the migrated snapshot, or an empty one when no snapshot could be
 * built (a process warning says why, and the caller's migration reports the cause).
 */
export async function createInMemoryPglite(): Promise<PGlite> {
  prepareInMemoryPglite();
  const pending = snapshotBlob!;
  const [snapshot, pgliteWasmModule] = await Promise.all([pending, compiledPgliteModule()]);
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
  return snapshot && new SnapshotBlob(snapshot as Uint8Array<ArrayBuffer>);
}

/**
 * The snapshot as the `Blob` PGlite takes, whose `arrayBuffer()` is one copy of the bytes it already
 * holds. PGlite reads the tarball with `arrayBuffer()`; a plain Blob's reads it back in chunks and
 * joins them, ~50 ms of CPU per open of the 25 MB tarball here (docs/benchmarks.md). Each call gets
 * its own copy, so no PGlite shares a buffer with another; every other Blob method is the base one,
 * over the same bytes.
 */
class SnapshotBlob extends Blob {
  readonly #bytes: Uint8Array<ArrayBuffer>;

  constructor(bytes: Uint8Array<ArrayBuffer>) {
    super([bytes]);
    this.#bytes = bytes;
  }

  override arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.#bytes.slice().buffer);
  }
}

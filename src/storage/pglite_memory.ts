/**
 * In-memory PGlite loaded from the migrated snapshot, opened as fast as PGlite allows (tests and the
 * in-process harness open one per Tether).
 *
 * Measured (2 vCPU): gunzipping the snapshot costs ~70 ms a call and, in a fresh process, compiling
 * PGlite's 9 MB WebAssembly module ~100 ms more. Here both are done once per process and shared as
 * immutable values (the tarball's bytes and a `WebAssembly.Module`), and the compile runs on V8's
 * background threads while the snapshot is read and unpacked. Nothing mutable is shared: every call
 * gets its own PGlite, and each of its files its own copy of the bytes.
 *
 * PostgreSQL's default 128 MB of shared buffers are zeroed at every start (~70 ms here); a test
 * database of a few hundred rows needs a fraction of that.
 */
import { MemoryFS, PGlite } from '@electric-sql/pglite';
import { migratedSnapshotOrUndefined } from './pglite_snapshot.js';
import { compiledPgliteModule } from './pglite_wasm.js';
import { dataDirTarEntries } from './tar_extract.js';

/** Enough for a test's tables; PostgreSQL's minimum is 128 kB. */
const SHARED_BUFFERS = '16MB';

let snapshotBytes: Promise<Uint8Array | undefined> | undefined;

/**
 * Starts reading the snapshot and compiling PGlite without waiting, so that a caller can overlap
 * them with its own start-up work (imports, certificates). Safe to call any number of times.
 */
export function prepareInMemoryPglite(): void {
  snapshotBytes ??= migratedSnapshotOrUndefined();
  void compiledPgliteModule();
}

/**
 * A fresh in-memory PGlite holding the migrated snapshot, or an empty one when no snapshot could be
 * built (a process warning says why, and the caller's migration reports the cause).
 */
export async function createInMemoryPglite(): Promise<PGlite> {
  prepareInMemoryPglite();
  const pending = snapshotBytes!;
  const [snapshot, pgliteWasmModule] = await Promise.all([pending, compiledPgliteModule()]);
  if (snapshot === undefined) {
    // A failed build must not poison later opens in this process: the next one tries again.
    if (snapshotBytes === pending) snapshotBytes = undefined;
    return PGlite.create();
  }
  return PGlite.create({
    fs: new SnapshotMemoryFs(snapshot),
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${SHARED_BUFFERS}`],
    ...(pgliteWasmModule ? { pgliteWasmModule } : {}),
  });
}

/**
 * PGlite's in-memory file system, filled with the snapshot's files before PostgreSQL starts, so
 * PGlite finds a data directory and resumes it (the `initialSyncFs` step of PGlite's `Filesystem`
 * interface, where its IndexedDB file system loads its files).
 *
 * Why not PGlite's `loadDataDir`: its loader copies every file out of the tarball, then resolves
 * every parent folder of every file and the file itself through Emscripten's path lookup several
 * times (exists? make it, write it, set its time): about 30 % of an in-memory open here, for ~470
 * files (docs/benchmarks.md). Here each folder is made once, in archive order (a folder comes before
 * what it holds), and each file is given a copy of its bytes of its own: PostgreSQL writes pages
 * back into its files in place, and no database may ever see another's pages
 * (test/storage/database.test.ts).
 */
class SnapshotMemoryFs extends MemoryFS {
  readonly #snapshot: Uint8Array;

  constructor(snapshot: Uint8Array) {
    super();
    this.#snapshot = snapshot;
  }

  override async initialSyncFs(): Promise<void> {
    await super.initialSyncFs();
    const fs = this.pg!.Module.FS;
    const root = PGlite.paths.PGDATA;
    // PostgreSQL refuses a data directory others may read (0700, as initdb makes it).
    if (!fs.analyzePath(root).exists) fs.mkdirTree(root, 0o700);
    for (const entry of dataDirTarEntries(this.#snapshot)) {
      const target = `${root}/${entry.path}`;
      if (entry.kind === 'directory') fs.mkdir(target, 0o700);
      // A copy of this database's own, handed over (canOwn): PostgreSQL writes pages back into it.
      else fs.writeFile(target, entry.data.slice(), { mode: 0o600, canOwn: true });
    }
  }
}

import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { PGlite } from '@electric-sql/pglite';

import { createPgliteKnex } from './pglite_knex.js';
import { migrateToLatest, migrationFileNames, migrationsDirectory } from './migrate.js';

/**
 * A migrated, empty PGlite data directory as a gzipped tarball (`PGlite#dumpDataDir`).
 *
 * A brand-new PGlite spends seconds in initdb; loading this tarball takes a fraction of a second.
 * It is built once per (PGlite version, migrations folder contents), cached as a file under the OS
 * temp folder so parallel test workers and later runs share it, and memoized in-process.
 */
let inProcess: Promise<Uint8Array> | undefined;
/** The fingerprint reads every migration file; they do not change while the process runs. */
let cachedSnapshotFile: string | undefined;

const gunzipAsync = promisify(gunzip);

/**
 * The snapshot for the current migrations as an uncompressed tarball, building and caching it if
 * needed. Kept gzipped (4–5 MB rather than ~40 MB) on disk and in memory; Node's native gunzip
 * (~45 ms) is faster than letting PGlite inflate it.
 */
export async function migratedSnapshot(): Promise<Uint8Array> {
  let pending = inProcess;
  if (pending === undefined) {
    pending = inProcess = readOrBuildSnapshot(snapshotFilePath());
    // A failed build must not poison later attempts in this process.
    pending.catch(() => {
      if (inProcess === pending) inProcess = undefined;
    });
  }
  return gunzipAsync(await pending);
}

/**
 * `migratedSnapshot()`, or undefined with a process warning saying why there is none; embedded
 * databases then start empty and the caller's migration reports the problem.
 */
export async function migratedSnapshotOrUndefined(): Promise<Uint8Array | undefined> {
  try {
    return await migratedSnapshot();
  } catch (error) {
    const cause = error instanceof Error ? error.message : String(error);
    process.emitWarning(`tether: could not prepare the migrated PGlite snapshot, starting from an empty database: ${cause}`);
    return undefined;
  }
}

/**
 * Where the snapshot for the current migrations lives. The name carries a hash of everything that
 * makes a snapshot stale, so a changed or added migration simply produces a new file.
 */
export function snapshotFilePath(): string {
  return (cachedSnapshotFile ??= join(privateCacheDirectory(), `pglite-${snapshotFingerprint()}.tgz`));
}

/**
 * A per-user folder under the OS temp folder. The temp folder is shared with other local users, and
 * a snapshot planted there under the predictable name would become the contents of our database;
 * so the folder must be ours, a real directory, and writable by nobody else.
 */
function privateCacheDirectory(): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  const directory = join(tmpdir(), `tether-cache-${uid ?? 'user'}`);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const stats = lstatSync(directory);
  const foreign = uid !== undefined && stats.uid !== uid;
  if (!stats.isDirectory() || foreign || (stats.mode & 0o022) !== 0) {
    throw new Error(`refusing to use ${directory} for the PGlite snapshot: not a private folder owned by this user`);
  }
  return directory;
}

/**
 * How the snapshot is made (buildSnapshot); part of the fingerprint, so a change to it makes a new
 * file rather than reusing one built the old way.
 */
const SNAPSHOT_FORMAT = 'migrated, template databases dropped';

function snapshotFingerprint(): string {
  const hash = createHash('sha256');
  hash.update(`pglite ${pgliteVersion()}\0${SNAPSHOT_FORMAT}\0`);
  const directory = migrationsDirectory();
  for (const name of migrationFileNames()) {
    hash.update(`${name}\0`);
    hash.update(readFileSync(join(directory, name)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 24);
}

function pgliteVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    // The package's export map hides package.json; its entry point sits in dist/.
    const entry = require.resolve('@electric-sql/pglite');
    const manifest = JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as {
      version?: string;
    };
    return manifest.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function readOrBuildSnapshot(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const tarball = await buildSnapshot();
  await writeAtomically(file, tarball);
  return tarball;
}

async function buildSnapshot(): Promise<Uint8Array> {
  const pglite = await PGlite.create();
  const knex = createPgliteKnex(pglite);
  try {
    await migrateToLatest(knex);
    await dropTemplateDatabases(pglite);
    const dump = await pglite.dumpDataDir('gzip');
    return new Uint8Array(await dump.arrayBuffer());
  } finally {
    await knex.destroy();
    if (!pglite.closed) await pglite.close();
  }
}

/**
 * initdb leaves three databases: `postgres`, which PGlite serves, and the templates `template0` and
 * `template1`, which only `CREATE DATABASE` reads. Tether never creates a database in its embedded
 * one, and the templates are 15 MB and 600 of the snapshot's ~1,070 files: every in-memory open
 * unpacks them file by file (PGlite.create from the snapshot: ~510 → ~370 ms here, docs/benchmarks.md).
 */
async function dropTemplateDatabases(pglite: PGlite): Promise<void> {
  await pglite.exec('ALTER DATABASE template0 IS_TEMPLATE false; ALTER DATABASE template1 IS_TEMPLATE false;');
  await pglite.exec('DROP DATABASE template0');
  await pglite.exec('DROP DATABASE template1');
  await pglite.exec('CHECKPOINT');
}

/** Temp file + rename: a reader (another jest worker) sees either no file or a complete one. */
async function writeAtomically(file: string, contents: Uint8Array): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, contents);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

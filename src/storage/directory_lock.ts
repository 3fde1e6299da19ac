import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

/**
 * Paths this process holds a lock on. A lock file naming our own pid but missing here was left by an
 * earlier process that happened to get the same pid (common in containers, where the server is pid 1).
 */
const heldByThisProcess = new Set<string>();

/** A held lock on an embedded database directory; `release` is idempotent. */
export interface DirectoryLock {
  path: string;
  release(): void;
}

/**
 * Takes an exclusive lock on an embedded PGlite directory by creating `<directory>.lock` holding our pid.
 *
 * Why: PGlite happily opens one data directory from two processes at once and the two then overwrite
 * each other's pages. A stale lock (its process is gone) is taken over.
 */
export function lockDatabaseDirectory(directory: string): DirectoryLock {
  const path = `${directory}.lock`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    if (tryCreateLockFile(path)) {
      heldByThisProcess.add(path);
      return { path, release: () => releaseLock(path) };
    }
    const holder = readLockHolder(path);
    if (holder !== undefined && isLiveHolder(path, holder)) {
      throw new Error(
        `the database directory ${directory} is in use by process ${holder} (lock file ${path}); ` +
          'stop that process, or delete the lock file if you are sure it is stale',
      );
    }
    removeIfPresent(path);
  }
  throw new Error(`could not lock the database directory ${directory} (lock file ${path})`);
}

/** The live process holding `<directory>.lock`, if any (another process, or this one). */
export function liveLockHolder(directory: string): number | undefined {
  const path = `${directory}.lock`;
  const holder = readLockHolder(path);
  return holder !== undefined && isLiveHolder(path, holder) ? holder : undefined;
}

function tryCreateLockFile(path: string): boolean {
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

function readLockHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isLiveHolder(path: string, pid: number): boolean {
  if (pid === process.pid) return heldByThisProcess.has(path);
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else; it still holds the directory.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function releaseLock(path: string): void {
  if (!heldByThisProcess.delete(path)) return;
  if (readLockHolder(path) === process.pid) removeIfPresent(path);
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

import { execFileSync } from 'node:child_process';
import os from 'node:os';

/**
 * CPU pinning with taskset (util-linux): the server under test on one CPU, the load generator on
 * another, so that neither takes the other's CPU time and the CPU each spends per token is its own.
 * PostgreSQL is a shared service: it is not pinned and runs wherever the kernel puts it.
 */
export type Role = 'server' | 'load';

export interface Pinning {
  /** What the report says about pinning. */
  description: string;
  pinned: boolean;
  /** Pins every thread of `pid` (and the threads it makes later) to the role's CPU; no-op without pinning. */
  pin(pid: number | undefined, role: Role): void;
  /** Lets `pid` run on every CPU again. */
  release(pid: number): void;
}

const CPU_OF: Record<Role, number> = { server: 0, load: 1 };

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function cpuPinning(warn: (message: string) => void, disabled = false): Pinning {
  const unpinned = (why: string): Pinning => {
    warn(`WARNING: no CPU pinning (${why}): server and load generator share every CPU, so their CPU per token and the ratios are noisier`);
    return { description: `not pinned (${why})`, pinned: false, pin: () => undefined, release: () => undefined };
  };
  if (disabled) return unpinned('--no-pin');
  if (os.availableParallelism() < 2) return unpinned('fewer than 2 CPUs');
  if (!hasTaskset()) return unpinned('taskset not found; install util-linux');
  return {
    description: `server on CPU ${CPU_OF.server}, load generator on CPU ${CPU_OF.load} (taskset); PostgreSQL not pinned`,
    pinned: true,
    pin(pid, role) {
      if (pid === undefined) return;
      try {
        // -a: every thread already running; threads made later inherit the affinity of their creator.
        execFileSync('taskset', ['-a', '-p', '-c', String(CPU_OF[role]), String(pid)], { stdio: 'ignore' });
      } catch (error) {
        warn(`WARNING: taskset could not pin ${pid} (${(error as Error).message}); it runs unpinned`);
      }
    },
    release(pid) {
      try {
        execFileSync('taskset', ['-a', '-p', '-c', `0-${os.availableParallelism() - 1}`, String(pid)], { stdio: 'ignore' });
      } catch {
        // It stays pinned: only the figures of later sections suffer.
      }
    },
  };
}

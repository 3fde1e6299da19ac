import { readFileSync } from 'node:fs';

/**
 * CPU time (user + system, all threads) of processes, read from /proc, in microseconds: to tell what
 * each request costs the server, the database and the load generator on a machine they share.
 * Linux only; elsewhere every figure is undefined.
 */
const TICK_MICROS = 10_000; // CLK_TCK = 100 on Linux

export function processCpuMicros(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MICROS;
  } catch {
    return undefined;
  }
}

/** Something that answers SQL (a pg.Client). */
interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/**
 * The PostgreSQL backends serving `database` (pg_stat_activity), whose CPU is then read from /proc:
 * the backends of the server under test. The WAL writer and other shared processes are left out (on
 * a shared server they also work for others); a backend flushes its own commit's WAL.
 */
export async function postgresBackendPids(admin: Queryable, database: string): Promise<number[]> {
  const { rows } = await admin.query('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database]);
  return rows.map((row) => Number(row.pid));
}

/** CPU time of a set of processes that may come and go: take a snapshot before and after a run. */
export function snapshotCpu(pids: readonly number[]): Map<number, number> {
  const snapshot = new Map<number, number>();
  for (const pid of pids) {
    const micros = processCpuMicros(pid);
    if (micros !== undefined) snapshot.set(pid, micros);
  }
  return snapshot;
}

/**
 * CPU used between two snapshots by the processes alive at the second (one first seen then counts
 * from zero; one that ended in between is left out, its share unknown).
 */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, micros] of after) sum += micros - (before.get(pid) ?? 0);
  return sum;
}

/** Busy and total jiffies of the whole machine (/proc/stat), for its utilisation during a run. */
export function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const [cpuLine] = readFileSync('/proc/stat', 'utf8').split('\n');
    const values = cpuLine!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const total = values.reduce((sum, value) => sum + value, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

import type { Knex } from 'knex';

import { pendingMigrations } from './migrate.js';

/**
 * Result of a readiness probe. `reason` is a coarse public code; `detail` says what is wrong in
 * words for the logs (driver errors name hosts and ports, so it is never shown to a caller).
 */
export type Readiness =
  | { ok: true }
  | { ok: false; reason: 'database' | 'migrations'; detail: string };

/** A probe's default bound (config database.readinessTimeout). */
const DEFAULT_TIMEOUT_MS = 2000;

/**
 * Readiness: the database answers and its schema is current, within `timeoutMs`. An instance whose
 * schema lags the code would fail on its first write, so it should not receive traffic yet; one
 * whose database does not answer in time should not either, and the probe must say so in time: a
 * load balancer's probe that hangs is a probe that failed too late.
 */
export async function checkReadiness(knex: Knex, options: { timeoutMs?: number } = {}): Promise<Readiness> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Readiness>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: 'database', detail: `database did not answer within ${timeoutMs} ms` }), timeoutMs);
  });
  try {
    // The probe may go on after the answer; its own waits are bounded by the database timeouts.
    return await Promise.race([probe(knex), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function probe(knex: Knex): Promise<Readiness> {
  try {
    await knex.raw('select 1');
  } catch (error) {
    return { ok: false, reason: 'database', detail: `database unreachable: ${describe(error)}` };
  }
  try {
    const pending = await pendingMigrations(knex);
    if (pending.length > 0) {
      return { ok: false, reason: 'migrations', detail: `database migrations pending: ${pending.join(', ')}` };
    }
  } catch (error) {
    return { ok: false, reason: 'migrations', detail: `cannot read migration state: ${describe(error)}` };
  }
  return { ok: true };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

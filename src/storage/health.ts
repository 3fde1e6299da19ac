import type { Knex } from 'knex';

import { pendingMigrations } from './migrate.js';

/**
 * Result of a readiness probe. `reason` is a coarse public code; `detail` says what is wrong in
 * words for the logs (driver errors name hosts and ports, so it is never shown to a caller).
 */
export type Readiness =
  | { ok: true }
  | { ok: false; reason: 'database' | 'migrations'; detail: string };

/**
 * Readiness: the database answers and its schema is current. An instance whose schema lags the code
 * would fail on its first write, so it should not receive traffic yet.
 */
export async function checkReadiness(knex: Knex): Promise<Readiness> {
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

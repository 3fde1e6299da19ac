import type { Knex } from 'knex';

import { pendingMigrations } from './migrate.js';

/** Result of a readiness probe; `reason` says what is wrong when `ok` is false. */
export interface Readiness {
  ok: boolean;
  reason?: string;
}

/**
 * Readiness: the database answers and its schema is current. An instance whose schema lags the code
 * would fail on its first write, so it should not receive traffic yet.
 */
export async function checkReadiness(knex: Knex): Promise<Readiness> {
  try {
    await knex.raw('select 1');
  } catch (error) {
    return { ok: false, reason: `database unreachable: ${describe(error)}` };
  }
  try {
    const pending = await pendingMigrations(knex);
    if (pending.length > 0) {
      return { ok: false, reason: `database migrations pending: ${pending.join(', ')}` };
    }
  } catch (error) {
    return { ok: false, reason: `cannot read migration state: ${describe(error)}` };
  }
  return { ok: true };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

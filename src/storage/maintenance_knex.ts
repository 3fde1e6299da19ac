import knexFactory, { type Knex } from 'knex';

import { isPgliteKnex } from './knex_kind.js';

/**
 * A second knex on the same PostgreSQL database without the request path's statement and idle
 * timeouts, for work that may rightly take long: migrations (a new index on a big ledger; waiting
 * for another instance's migration). Connecting and acquiring stay bounded. The caller destroys it.
 * undefined for PGlite, which has no server-side timeouts: use its knex itself.
 */
export function openMaintenanceKnex(knex: Knex): Knex | undefined {
  if (isPgliteKnex(knex)) return undefined;
  const config = knex.client.config as Knex.Config;
  const connection = typeof config.connection === 'string' ? { connectionString: config.connection } : config.connection as Record<string, unknown>;
  return knexFactory({
    ...config,
    connection: { ...connection, statement_timeout: undefined, idle_in_transaction_session_timeout: undefined, query_timeout: undefined },
    // One connection holds the migration lock while the other migrates.
    pool: { min: 0, max: 2 },
  });
}

import type { Knex } from 'knex';

/**
 * True when `knex` talks to embedded PGlite (knex-pglite) rather than a PostgreSQL server.
 *
 * knex-pglite's client keeps its PGlite instance on `client.pglite`; the `pg` client never has one.
 * Callers need this because PGlite has exactly one connection: anything that pins a second
 * connection (an advisory-lock holder, a parallel query) would wait on itself forever.
 */
export function isPgliteKnex(knex: Knex): boolean {
  const client = knex.client as { pglite?: unknown; config?: { client?: unknown } };
  return client.pglite !== undefined || typeof client.config?.client === 'function';
}

import type { PGlite } from '@electric-sql/pglite';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';

/**
 * knex-pglite's client, except that destroying the knex leaves the PGlite open: for an in-memory
 * database given back for reuse (pglite_reuse.ts) rather than closed.
 */
class ClientLeavingPgliteOpen extends ClientPgLite {
  override async destroyRawConnection(): Promise<void> {}
}

/**
 * A knex instance over an already-created PGlite.
 *
 * knex-pglite accepts the instance through a connection *function*: a plain `{ pglite }` object
 * would be deep-cloned by knex. No `pool` option: knex-pglite fixes it at one connection and rejects
 * any other setting. Destroying the knex closes the PGlite.
 *
 * `acquireTimeoutMs`: how long a query waits for that one connection (held by a transaction) before
 * it fails; knex's own default is a minute. `leavesPgliteOpen`: destroying the knex does not close the PGlite.
 */
export function createPgliteKnex(pglite: PGlite, options: { acquireTimeoutMs?: number; log?: Knex.Logger; leavesPgliteOpen?: boolean } = {}): Knex {
  return knexFactory({
    client: options.leavesPgliteOpen ? ClientLeavingPgliteOpen : ClientPgLite,
    connection: (() => ({ pglite })) as unknown as Knex.StaticConnectionConfig,
    ...(options.acquireTimeoutMs === undefined ? {} : { acquireConnectionTimeout: options.acquireTimeoutMs }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
}

import type { Knex } from 'knex';

import { isPgliteKnex } from './knex_kind.js';

/**
 * A hot statement as a named prepared statement of `pg`, on a connection taken from knex's pool and
 * given back at once: PostgreSQL parses and plans it once per connection, and the request path
 * skips knex's query compilation, bindings and result formatting (the profile of docs/benchmarks.md,
 * "The issuance statement on a pooled connection"). The pool, its acquire timeout and the
 * connection's own bounds (statement_timeout, query_timeout; database.ts) all still apply.
 *
 * `text` uses `$1, $2…` placeholders. On PGlite, which has one connection, no prepared statements
 * and no pool, the statement goes through knex as usual.
 */
export interface PreparedStatement {
  name: string;
  text: string;
}

interface PgConnection {
  query(config: { name: string; text: string; values: unknown[] }, callback: (error: Error | null, result: { rows: Record<string, unknown>[] }) => void): void;
}

interface PooledClient {
  acquireConnection(): Promise<PgConnection>;
  releaseConnection(connection: PgConnection): Promise<void>;
}

export async function runPrepared(knex: Knex, statement: PreparedStatement, values: unknown[]): Promise<Record<string, unknown>[]> {
  if (isPgliteKnex(knex)) {
    const result = (await knex.raw(statement.text.replace(/\$\d+/g, '?'), values as Knex.RawBinding[])) as { rows?: Record<string, unknown>[] };
    return result.rows ?? [];
  }
  // knex's 'query' listeners (debug logging, tests that count round trips) still see the statement.
  if (knex.listenerCount('query') > 0) knex.emit('query', { sql: statement.text, bindings: values, method: 'raw', options: { name: statement.name } });
  const client = knex.client as unknown as PooledClient;
  const connection = await client.acquireConnection();
  try {
    // The callback form: database.ts wraps it to close a connection whose query timed out.
    return await new Promise((resolve, reject) => {
      connection.query({ name: statement.name, text: statement.text, values }, (error, result) => (error ? reject(error) : resolve(result.rows)));
    });
  } finally {
    await client.releaseConnection(connection);
  }
}

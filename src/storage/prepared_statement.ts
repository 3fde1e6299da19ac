import type { Knex } from 'knex';

import type { PGlite } from '@electric-sql/pglite';

import { isPgliteKnex } from './knex_kind.js';
import { runPreparedOnPglite } from './pglite_prepared.js';

/**
 * A hot statement as a named prepared statement of `pg`, on a connection taken from knex's pool and
 * given back at once: PostgreSQL parses and plans it once per connection, and the request path
 * skips knex's query compilation, bindings and result formatting (the profile of docs/benchmarks.md,
 * "The issuance statement on a pooled connection"). The pool, its acquire timeout and the
 * connection's own bounds (statement_timeout, query_timeout; database.ts) all still apply.
 *
 * `text` uses `$1, $2…` placeholders. On PGlite the one connection is taken from knex's pool the
 * same way (a knex transaction holding it makes the statement wait, within the acquire timeout), and
 * the statement is prepared on PGlite's session (storage/pglite_prepared.ts).
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
  // knex's 'query' listeners (debug logging, tests that count round trips) still see the statement.
  if (knex.listenerCount('query') > 0) knex.emit('query', { sql: statement.text, bindings: values, method: 'raw', options: { name: statement.name } });
  const client = knex.client as unknown as PooledClient;
  const connection = await client.acquireConnection();
  try {
    if (isPgliteKnex(knex)) return await runPreparedOnPglite(connection as unknown as PGlite, statement.name, statement.text, values.map(asText));
    // The callback form: database.ts wraps it to close a connection whose query timed out.
    return await new Promise((resolve, reject) => {
      connection.query({ name: statement.name, text: statement.text, values }, (error, result) => (error ? reject(error) : resolve(result.rows)));
    });
  } finally {
    await client.releaseConnection(connection);
  }
}

/** Bind values in text format, as pg sends them (null stays null). */
function asText(value: unknown): string {
  if (value === null || value === undefined) return null as unknown as string;
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

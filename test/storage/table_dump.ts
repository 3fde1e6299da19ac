import type { Knex } from 'knex';

/**
 * Every table of the database's `public` schema, for tests that must see *everything* stored
 * (row counts before and after a request; every column of every row as text).
 */
export async function tableNames(knex: Knex): Promise<string[]> {
  const result = await knex.raw(`SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`);
  return (result.rows as { table_name: string }[]).map((row) => row.table_name);
}

/** Row count of every table, by name. */
export async function rowCounts(knex: Knex): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of await tableNames(knex)) {
    // Names come from the catalogue, quoted as identifiers.
    const result = await knex.raw('SELECT count(*)::int AS n FROM ??', [table]);
    counts[table] = (result.rows as { n: number }[])[0]!.n;
  }
  return counts;
}

/** Every row of every table as PostgreSQL's text form of the whole row (every column, jsonb included). */
export async function dumpEveryRow(knex: Knex): Promise<string> {
  const lines: string[] = [];
  for (const table of await tableNames(knex)) {
    const result = await knex.raw('SELECT t::text AS row FROM ?? t', [table]);
    for (const { row } of result.rows as { row: string }[]) lines.push(`${table} ${row}`);
  }
  return lines.join('\n');
}

import type { Knex } from 'knex';

/** The scan nodes of a plan (EXPLAIN's JSON), as "<node> on <table>": reads of tables, not of CTEs or functions. */
export function scannedTables(plan: Record<string, unknown>): string[] {
  const own = typeof plan['Relation Name'] === 'string' && String(plan['Node Type']).includes('Scan') ? [`${String(plan['Node Type'])} on ${String(plan['Relation Name'])}`] : [];
  const children = (plan.Plans as Record<string, unknown>[] | undefined) ?? [];
  return [...own, ...children.flatMap(scannedTables)];
}

/** The scans of the session's plan for the prepared statement `name`, executed with an empty batch. */
export async function scansOfPrepared(knex: Knex | Knex.Transaction, name: string): Promise<string[]> {
  const explained = await knex.raw(`EXPLAIN (FORMAT JSON) EXECUTE ${name}('[]')`);
  const [{ 'QUERY PLAN': [root] }] = explained.rows as [{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] }];
  return scannedTables(root.Plan);
}

import type { Knex } from 'knex';

/**
 * PGlite runs PostgreSQL in single-user mode, which has no autovacuum: nothing refreshes a table's
 * statistics as it grows, and nothing replans what a session keeps planned. A prepared statement's
 * generic plan is made once per session, from the table's size then; Tether's hot statements are
 * prepared (storage/pglite_prepared.ts), and a `tether dev` session lasts as long as the server. A
 * session that began while a table was known to be small (its pages counted by a migration's index
 * build or an ANALYZE) keeps a sequential scan of it in the plan, and every statement then reads the
 * whole table as it grows (found on `issued_tokens`: docs/ledger.md, "PGlite's statistics").
 *
 * This does the part of autovacuum that keeps plans fit: a table whose pages have grown past twice
 * what its statistics say (plus a few pages) is analyzed, which also invalidates every plan that
 * reads it, so each is made again for the table as it is. Doubling keeps the work proportional to
 * the growth: ANALYZE reads a bounded sample (30,000 rows at the default statistics target), and a
 * table of a million rows is analyzed about 17 times over its whole life.
 *
 * Dead rows (revocations, a token's last use, expired DPoP proofs swept) are left to PostgreSQL's
 * page pruning, as before: VACUUM is not run here.
 */

/** Pages a table may grow by past its statistics before it is analyzed again: 2 × the counted pages + this. */
const SLACK_PAGES = 8;

/** How often the embedded database is checked: autovacuum's default nap is 60 s; the check itself is one small catalog query. */
export const GROWTH_CHECK_INTERVAL_MS = 30_000;

/** The tables of the public schema that have outgrown their statistics, by name. */
async function grownTables(knex: Knex): Promise<string[]> {
  const result = await knex.raw<{ rows: { relname: string }[] }>(
    `SELECT c.relname FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
       AND pg_relation_size(c.oid) / current_setting('block_size')::int > 2 * greatest(c.relpages, 0) + ?
     ORDER BY c.relname`,
    [SLACK_PAGES],
  );
  return result.rows.map((row) => row.relname);
}

/** One pass: analyzes each table that has outgrown its statistics; resolves with their names. */
export async function analyzeGrownTables(knex: Knex): Promise<string[]> {
  const tables = await grownTables(knex);
  for (const table of tables) await knex.raw('ANALYZE ??', [table]);
  return tables;
}

export interface GrowthAnalysis {
  /** Stops the checks; resolves when a pass in progress has ended. */
  stop(): Promise<void>;
}

/**
 * Checks every `intervalMs` (one pass at a time; the timer never keeps the process alive). A pass
 * that fails (the database busy past its acquire timeout, or closing) is logged and the next one
 * tries again.
 */
export function startGrowthAnalysis(knex: Knex, options: { intervalMs?: number; warn(message: string): void }): GrowthAnalysis {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running !== undefined) return;
    running = analyzeGrownTables(knex)
      .then(() => undefined, (error: unknown) => options.warn(`embedded database: could not refresh the statistics of grown tables: ${error instanceof Error ? error.message : String(error)}`))
      .finally(() => {
        running = undefined;
      });
  }, options.intervalMs ?? GROWTH_CHECK_INTERVAL_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

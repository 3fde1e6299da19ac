import { issuanceStatementFor } from '../../src/ledger/record_issuance.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { analyzeGrownTables, startGrowthAnalysis } from '../../src/storage/pglite_analyze.js';
import { scansOfPrepared } from '../support/plan_scans.js';

/**
 * The embedded database has no autovacuum (src/storage/pglite_analyze.ts): a plan its session made
 * while issued_tokens was known to be small reads the whole table on every statement, until the
 * table's statistics are refreshed. These tests make that state on PGlite and check that the growth
 * analysis gets the session out of it.
 */

let database: Database;

beforeEach(async () => {
  database = await openDatabase({ memory: true });
});

afterEach(() => database.close());

/** `count` tokens in issued_tokens, each a child of the one before (an exchange's lineage). */
async function insertTokens(count: number, prefix: string): Promise<void> {
  await database.knex.raw(
    `INSERT INTO issued_tokens (token_id, format, client_id, subject, resource, scope, binding_method, issued_at, expires_at, parent_token_id)
     SELECT ? || n, 'jwt', 'worker', 'worker', 'https://orders.test', 'orders:read', 'bearer', now(), now() + interval '5 minutes',
            CASE WHEN n > 1 THEN ? || (n - 1) END
     FROM generate_series(1, ?::int) AS n`,
    [prefix, prefix, count],
  );
}

async function countedPages(table: string): Promise<number> {
  const result = await database.knex.raw<{ rows: { relpages: number }[] }>('SELECT relpages FROM pg_class WHERE relname = ?', [table]);
  return Number(result.rows[0]!.relpages);
}

const scansOf = (name: string) => scansOfPrepared(database.knex, name);

test('a session plan made while issued_tokens was small is made again once the table has grown and been analyzed', async () => {
  const { knex } = database;
  await insertTokens(3, 'small-');
  await knex.raw('ANALYZE issued_tokens');
  expect(await countedPages('issued_tokens')).toBe(1);
  // The exchange statement, kept as the session keeps it: one generic plan.
  await knex.raw("SET plan_cache_mode = 'force_generic_plan'");
  await knex.raw(`PREPARE exchange_probe (jsonb) AS ${issuanceStatementFor([{ parent_token_id: 'p', proof_key_hash: null }]).text.replace('$1::jsonb', '$1')}`);
  // A one-page table: reading it whole is the cheapest way to find a parent, and that plan stays.
  expect(await scansOf('exchange_probe')).toContain('Seq Scan on issued_tokens');

  await insertTokens(3000, 'grown-');
  expect(await analyzeGrownTables(knex)).toContain('issued_tokens');
  expect(await countedPages('issued_tokens')).toBeGreaterThan(10);
  // The same prepared statement, replanned: every read of issued_tokens is a probe of its key.
  const scans = (await scansOf('exchange_probe')).filter((scan) => scan.includes('issued_tokens'));
  expect(scans.length).toBeGreaterThan(0);
  expect(scans.filter((scan) => !scan.startsWith('Index'))).toEqual([]);

  // Nothing grew since: the next pass analyzes nothing.
  expect(await analyzeGrownTables(knex)).toEqual([]);
  await knex.raw('DEALLOCATE exchange_probe');
  await knex.raw('RESET plan_cache_mode');
});

test('a table is analyzed again only once it has doubled, plus a few pages', async () => {
  const { knex } = database;
  await insertTokens(2000, 'first-');
  expect(await analyzeGrownTables(knex)).toContain('issued_tokens');
  const pages = await countedPages('issued_tokens');
  // Less than double: nothing to do.
  await insertTokens(Math.floor(2000 * 0.5), 'more-');
  expect(await analyzeGrownTables(knex)).not.toContain('issued_tokens');
  expect(await countedPages('issued_tokens')).toBe(pages);
  // Past double and the slack: analyzed, and its pages counted anew.
  await insertTokens(4000, 'most-');
  expect(await analyzeGrownTables(knex)).toContain('issued_tokens');
  expect(await countedPages('issued_tokens')).toBeGreaterThan(2 * pages);
});

test('the checks run on their interval, stop when asked, and a failed pass is logged, not thrown', async () => {
  const warnings: string[] = [];
  await insertTokens(2000, 'timed-');
  const analysis = startGrowthAnalysis(database.knex, { intervalMs: 10, warn: (message) => warnings.push(message) });
  // Bounded in count and time: the first pass runs within a few intervals.
  for (let attempt = 0; attempt < 200 && (await countedPages('issued_tokens')) === 0; attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(await countedPages('issued_tokens')).toBeGreaterThan(10);
  await analysis.stop();
  expect(warnings).toEqual([]);

  // A pass on a database that is gone: one warning per failed pass, no unhandled rejection.
  const closed = await openDatabase({ memory: true });
  await closed.close();
  const failing = startGrowthAnalysis(closed.knex, { intervalMs: 10, warn: (message) => warnings.push(message) });
  for (let attempt = 0; attempt < 200 && warnings.length === 0; attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  await failing.stop();
  expect(warnings.length).toBeGreaterThan(0);
  expect(warnings[0]).toMatch(/^embedded database: could not refresh the statistics of grown tables: /);
});

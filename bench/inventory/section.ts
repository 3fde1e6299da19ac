import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { eventsOfToken, findTokenRecord, latestEvents, listTokens, tokenCountsByClient, tokenLineage } from '../../src/ledger/inventory_queries.js';
import { migrationFileNames, migrationsDirectory } from '../../src/storage/migrate.js';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { databaseUrl, type BenchContext } from '../lib/context.js';
import { median, round } from '../lib/stats.js';

/**
 * The inventory queries (`tether tokens list/show`, `clients list/show`, `ledger`) at a million
 * ledger rows: issued_tokens and ledger_events each get `rows` rows, then every query the CLI runs
 * is timed, interleaved, as the CLI runs it (src/ledger/inventory_queries.ts through knex).
 *
 * Index or schema changes are measured before and after in the same run, interleaved: the database
 * is migrated up to, not including, the migrations in SCHEMA_CHANGES, seeded and analyzed; then each
 * repetition runs the queries once on that schema and once inside a transaction that applies those
 * migrations first and is rolled back (PostgreSQL's DDL is transactional), in alternating order.
 */
// 0007 dropped two indexes (docs/benchmarks.md, "Ledger indexes"); 0009 adds the use tables and
// touches no ledger table or index — measured to confirm the inventory is unchanged by it.
export const SCHEMA_CHANGES: readonly string[] = ['0009_use_events.js'];

export interface InventoryTiming {
  query: string;
  /** Milliseconds, one per repetition. */
  ms: number[];
}

export interface InventorySchema {
  /** The last migration applied when these were measured. */
  schema: string;
  timings: InventoryTiming[];
  /** Total size of each ledger table with its indexes, MB. */
  sizesMB: Record<string, number>;
}

export interface InventoryResult {
  rows: number;
  seedSeconds: number;
  schemas: InventorySchema[];
}

const CLIENTS = 20;
const RESOURCES = 5;

/**
 * Seed in SQL: token i belongs to client i % 20 and resource i % 5, was issued (100 ms apart, the
 * newest now) for 5 minutes; one in 97 revoked; one in 10 exchanged from token i - 1 (lineages).
 * One event per token. In 100k-row slices, so no single statement holds the table for long.
 */
async function seed(knex: Knex, rows: number): Promise<void> {
  const slice = 100_000;
  for (let from = 1; from <= rows; from += slice) {
    const to = Math.min(rows, from + slice - 1);
    await knex.raw(`
      INSERT INTO issued_tokens (token_id, format, client_id, subject, resource, scope, binding_method, binding_thumbprint, issued_at, expires_at, parent_token_id, revoked_at)
      SELECT 'tok-' || g, 'jwt', 'client-' || (g % ${CLIENTS}), 'client-' || (g % ${CLIENTS}), 'https://api-' || (g % ${RESOURCES}) || '.example.test',
             'orders:read', 'mtls', md5(g::text), t, t + interval '5 minutes',
             CASE WHEN g % 10 = 0 THEN 'tok-' || (g - 1) END, CASE WHEN g % 97 = 0 THEN t + interval '1 minute' END
      FROM generate_series(?::int, ?::int) g, LATERAL (SELECT now() - (? - g) * interval '100 milliseconds' AS t) x`, [from, to, rows]);
    await knex.raw(`
      INSERT INTO ledger_events (occurred_at, type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint, expires_at, parent_token_id, request_id, instance_id)
      SELECT t, CASE WHEN g % 10 = 0 THEN 'token.exchanged' ELSE 'token.issued' END, 'client-' || (g % ${CLIENTS}), 'https://api-' || (g % ${RESOURCES}) || '.example.test',
             'orders:read', 'tok-' || g, 'jwt', 'mtls', md5(g::text), t + interval '5 minutes', CASE WHEN g % 10 = 0 THEN 'tok-' || (g - 1) END, 'req-' || g, 'bench'
      FROM generate_series(?::int, ?::int) g, LATERAL (SELECT now() - (? - g) * interval '100 milliseconds' AS t) x`, [from, to, rows]);
  }
}

/** The queries, named as the command that runs them; a token in the middle of the table with a lineage. */
function inventoryQueries(knex: Knex | Knex.Transaction, rows: number): [string, () => Promise<unknown>][] {
  const middle = `tok-${Math.floor(rows / 20) * 10}`;
  return [
    ['tokens list', () => listTokens(knex)],
    ['tokens list --client', () => listTokens(knex, { clientId: 'client-7' })],
    ['tokens list --resource', () => listTokens(knex, { resource: 'https://api-2.example.test' })],
    ['tokens list --client --state active', () => listTokens(knex, { clientId: 'client-7', state: 'active' })],
    ['tokens list --state revoked', () => listTokens(knex, { state: 'revoked' })],
    ['tokens list --client --state expired', () => listTokens(knex, { clientId: 'client-7', state: 'expired' })],
    ['tokens show', async () => {
      const token = await findTokenRecord(knex, middle);
      if (!token) throw new Error(`inventory: ${middle} not seeded`);
      return Promise.all([tokenLineage(knex, token.tokenId), eventsOfToken(knex, token.tokenId)]);
    }],
    ['clients list', () => tokenCountsByClient(knex)],
    ['clients show (latest events of a client)', () => latestEvents(knex, 10, { clientId: 'client-7' })],
    ['ledger (latest events)', () => latestEvents(knex, 20)],
    ['ledger --type token.exchanged', () => latestEvents(knex, 20, { type: 'token.exchanged' })],
  ];
}

/** A rollback that carries the figures measured inside the transaction out of it. */
class Measured extends Error {
  constructor(readonly timings: number[], readonly sizes: Record<string, number>) {
    super('rolled back after measuring');
  }
}

type Migration = { up(knex: Knex | Knex.Transaction): Promise<void> };

/** Runs every query once on `db`, in order; milliseconds each. */
async function timeOnce(db: Knex | Knex.Transaction, rows: number): Promise<number[]> {
  const timings: number[] = [];
  for (const [, run] of inventoryQueries(db, rows)) {
    const started = performance.now();
    await run();
    timings.push(round(performance.now() - started, 2));
  }
  return timings;
}

/** Runs the queries inside a transaction that first applies `changes`, then rolls it back. */
async function timeInTransaction(knex: Knex, changes: readonly Migration[], rows: number): Promise<{ timings: number[]; sizes: Record<string, number> }> {
  try {
    await knex.transaction(async (trx) => {
      for (const change of changes) await change.up(trx);
      throw new Measured(await timeOnce(trx, rows), await tableSizes(trx));
    });
  } catch (error) {
    if (error instanceof Measured) return { timings: error.timings, sizes: error.sizes };
    throw error;
  }
  throw new Error('unreachable: the transaction always rolls back');
}

/** Each repetition measures both schemas, the order alternating; a warm-up of each first. */
async function timeSchemas(knex: Knex, changes: readonly Migration[], rows: number, repetitions: number): Promise<{ timings: InventoryTiming[][]; sizes: Record<string, number>[] }> {
  const names = inventoryQueries(knex, rows).map(([query]) => query);
  const schemas = changes.length ? [[], changes] : [[]];
  const timings = schemas.map(() => names.map((query) => ({ query, ms: [] as number[] })));
  const sizes: Record<string, number>[] = [];
  for (const [index, schema] of schemas.entries()) sizes[index] = (await timeInTransaction(knex, schema, rows)).sizes; // warm-up
  for (let repetition = 0; repetition < repetitions; repetition++) {
    const order = repetition % 2 === 0 ? [...schemas.keys()] : [...schemas.keys()].reverse();
    for (const index of order) {
      const measured = await timeInTransaction(knex, schemas[index]!, rows);
      measured.timings.forEach((ms, query) => timings[index]![query]!.ms.push(ms));
    }
  }
  return { timings, sizes };
}

async function tableSizes(knex: Knex | Knex.Transaction): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const table of ['issued_tokens', 'ledger_events']) {
    const { rows } = (await knex.raw('SELECT pg_total_relation_size(?::regclass) AS bytes', [table])) as { rows: { bytes: string }[] };
    sizes[table] = round(Number(rows[0]!.bytes) / 2 ** 20, 1);
  }
  return sizes;
}

export async function inventorySection(context: BenchContext): Promise<InventoryResult | undefined> {
  const { log, options } = context;
  const database = `${context.benchDatabase}_inventory`;
  const admin = new pg.Client({ connectionString: context.postgresAdminUrl });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
  } catch (error) {
    log(`PostgreSQL at ${context.postgresAdminUrl} unavailable (${(error as Error).message}): skipping the inventory section`);
    await admin.end().catch(() => undefined);
    return undefined;
  }
  const knex = knexFactory({ client: 'pg', connection: databaseUrl(context.postgresAdminUrl, database), pool: { min: 1, max: 2 } });
  try {
    const migrator = { directory: migrationsDirectory(), loadExtensions: ['.js'], tableName: 'knex_migrations' };
    const before = migrationFileNames().filter((name) => !SCHEMA_CHANGES.includes(name));
    for (const name of before) await knex.migrate.up({ ...migrator, name });
    const seedStarted = performance.now();
    await seed(knex, options.inventoryRows);
    await knex.raw('VACUUM ANALYZE issued_tokens, ledger_events');
    const seedSeconds = round((performance.now() - seedStarted) / 1000, 1);
    log(`inventory: seeded ${options.inventoryRows} tokens and events in ${seedSeconds} s`);
    const repetitions = options.quick ? 3 : 9;
    const changes = await Promise.all(SCHEMA_CHANGES.map(async (name) => (await import(pathToFileURL(path.join(migrationsDirectory(), name)).href)) as Migration));
    const measured = await timeSchemas(knex, changes, options.inventoryRows, repetitions);
    const schemaNames = [before.at(-1)!, ...SCHEMA_CHANGES.slice(-1)];
    const schemas: InventorySchema[] = measured.timings.map((timings, index) => ({ schema: schemaNames[index]!, timings, sizesMB: measured.sizes[index]! }));
    for (const schema of schemas) {
      log(`inventory at ${schema.schema}: ${schema.timings.map((timing) => `${timing.query} ${median(timing.ms)} ms`).join('; ')}`);
    }
    return { rows: options.inventoryRows, seedSeconds, schemas };
  } finally {
    await knex.destroy();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch((error: Error) => log(`could not drop ${database}: ${error.message}`));
    await admin.end();
  }
}

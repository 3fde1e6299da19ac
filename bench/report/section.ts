import type { Knex } from 'knex';
import pg from 'pg';
import { USE_REFUSAL_REASONS } from 'tether-oauth-resource-server';
import { parseConfig } from '../../src/config/load_config.js';
import type { TetherConfig } from '../../src/config/schema.js';
import {
  exposureReport, recordsSince, reportWindow, REPORT_QUERIES, tokenFacts, type ReportFilter, type ReportWindow,
} from '../../src/ledger/exposure_report.js';
import { appendUseEvents, type UseEventInput } from '../../src/ledger/use_events.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { databaseUrl, type BenchContext } from '../lib/context.js';
import { median, round } from '../lib/stats.js';

/**
 * The exposure report (`tether report`, src/ledger/exposure_report.ts) at a million use events, on
 * PGlite (as `tether dev` runs it) and on PostgreSQL: 1,000,000 use events appended through
 * `appendUseEvents` in batches (the write path of the use-report endpoint), spread over the last 30
 * days, against `tokens` issued tokens over 90 days of history (a token every 26 s at 300,000; the
 * window's 100,000 are presented about ten times each); then every query of the report is timed as
 * the report runs it, and the whole report with and without `--client` / `--resource` (median of
 * the repetitions, min–max). `tokenFacts` is measured with the BRIN index of migration 0010 and,
 * inside a transaction that drops it and is rolled back, without it (the schema before 0010).
 */

export interface ReportTiming {
  query: string;
  /** Milliseconds, one per repetition. */
  ms: number[];
}

export interface ReportBackendResult {
  backend: 'postgres' | 'pglite';
  /** Seconds to seed the tokens, and to append the events batch by batch. */
  seedTokensSeconds: number;
  appendSeconds: number;
  /** Rows in use_events and in use_rollups after seeding. */
  useEvents: number;
  rollups: number;
  /** Total size with indexes, MB. */
  sizesMB: Record<string, number>;
  timings: ReportTiming[];
  /** Per query and window: the plan's scans, e.g. "Index Scan using use_rollups_key on use_rollups". */
  plans: Record<string, string[]>;
}

export interface ReportBenchResult {
  events: number;
  tokens: number;
  batchSize: number;
  results: ReportBackendResult[];
}

const CLIENTS = 20;
const RESOURCES = 5;
const DAY_MS = 24 * 3600_000;
const WINDOW_DAYS = 30;
/** issued_tokens is never pruned: the report's window is a third of the history seeded. */
const HISTORY_DAYS = 90;
const BATCH = 5_000;
const resourceUri = (r: number) => `https://api-${r}.example.test`;

/** 20 clients, each granted read, write and admin on every API; the APIs' routes require read or write, never admin. */
function benchConfig(): TetherConfig {
  const resources = Array.from({ length: RESOURCES }, (_, r) => ({ uri: resourceUri(r), scopes: [`api-${r}:read`, `api-${r}:write`, `api-${r}:admin`] }));
  const clients = Array.from({ length: CLIENTS }, (_, c) => ({
    id: `client-${c}`, owner: 'bench', purpose: 'report bench', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: `CN=client-${c}` },
    resources: Object.fromEntries(resources.map((resource) => [resource.uri, resource.scopes])),
  }));
  return parseConfig({ issuer: 'https://localhost:8443', resources, clients });
}

/**
 * Token g (1…tokens) of client g % 20 for API g % 5, issued `step` apart over 90 days up to `now`,
 * for 5 minutes; one in 97 revoked a minute after issuance. One issuance event each.
 */
async function seedTokens(database: Database, tokens: number, now: Date): Promise<void> {
  const stepMs = (HISTORY_DAYS * DAY_MS) / tokens;
  const slice = 50_000;
  for (let from = 1; from <= tokens; from += slice) {
    const to = Math.min(tokens, from + slice - 1);
    const bindings = [from, to, now.toISOString(), tokens, stepMs];
    await database.knex.raw(`
      INSERT INTO issued_tokens (token_id, format, client_id, subject, resource, scope, binding_method, binding_thumbprint, issued_at, expires_at, revoked_at)
      SELECT 'tok-' || g, 'jwt', 'client-' || (g % ${CLIENTS}), 'client-' || (g % ${CLIENTS}), 'https://api-' || (g % ${RESOURCES}) || '.example.test',
             'api-' || (g % ${RESOURCES}) || ':read', 'mtls', md5(g::text), t, t + interval '5 minutes', CASE WHEN g % 97 = 0 THEN t + interval '1 minute' END
      FROM generate_series(?::int, ?::int) g, LATERAL (SELECT ?::timestamptz - (? - g) * make_interval(secs => ? / 1000.0) AS t) x`, bindings);
    await database.knex.raw(`
      INSERT INTO ledger_events (occurred_at, type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint, expires_at, request_id, instance_id)
      SELECT t, 'token.issued', 'client-' || (g % ${CLIENTS}), 'https://api-' || (g % ${RESOURCES}) || '.example.test',
             'api-' || (g % ${RESOURCES}) || ':read', 'tok-' || g, 'jwt', 'mtls', md5(g::text), t + interval '5 minutes', 'req-' || g, 'bench'
      FROM generate_series(?::int, ?::int) g, LATERAL (SELECT ?::timestamptz - (? - g) * make_interval(secs => ? / 1000.0) AS t) x`, bindings);
  }
}

/**
 * Batch b is API b % 5's report: each event is a presentation of one of that API's tokens of the
 * last 30 days during its lifetime (revoked ones after their revocation). One in 20 is refused, the reasons in turn; a
 * refused `wrong_audience` one is a token of the next API. Accepted ones require read, write, or no scope.
 */
function batchOf(b: number, size: number, tokens: number, now: Date): UseEventInput[] {
  const r = b % RESOURCES;
  const stepMs = (HISTORY_DAYS * DAY_MS) / tokens;
  const recent = Math.floor((tokens * WINDOW_DAYS) / HISTORY_DAYS);
  const base = RESOURCES * Math.floor((tokens - recent) / RESOURCES);
  const perResource = Math.floor(recent / RESOURCES);
  return Array.from({ length: size }, (_, j): UseEventInput => {
    const k = b * size + j;
    const m = 1 + ((k * 7919) % (perResource - 1));
    const claimed = k % 20 === 0 && USE_REFUSAL_REASONS[Math.floor(k / 20) % USE_REFUSAL_REASONS.length] === 'wrong_audience';
    const g = base + RESOURCES * m + (claimed ? (r + 1) % RESOURCES : r);
    const issuedAt = now.getTime() - (tokens - g) * stepMs;
    const occurredAt = new Date(issuedAt + (g % 97 === 0 ? 61_000 : 0) + (k % 239) * 1000);
    const client = `client-${g % CLIENTS}`;
    if (k % 20 === 0) {
      const reason = USE_REFUSAL_REASONS[Math.floor(k / 20) % USE_REFUSAL_REASONS.length]!;
      return {
        occurredAt, outcome: 'refused', reason, code: `ERR_${reason.toUpperCase()}`, tokenId: `tok-${g}`, clientId: client,
        tokenAudience: claimed ? resourceUri((r + 1) % RESOURCES) : undefined, scopesRequired: `api-${r}:read`, bindingMethod: 'mtls', count: 1,
      };
    }
    const scopes = [`api-${r}:read`, `api-${r}:write`, ''][k % 3]!;
    return { occurredAt, outcome: 'accepted', tokenId: `tok-${g}`, clientId: client, scopesRequired: scopes, bindingMethod: 'mtls', count: 1 };
  });
}

async function appendEvents(database: Database, events: number, tokens: number, now: Date): Promise<void> {
  for (let b = 0; b * BATCH < events; b++) {
    const size = Math.min(BATCH, events - b * BATCH);
    await appendUseEvents(database.knex, { reporterClientId: `api-${b % RESOURCES}`, resource: resourceUri(b % RESOURCES), instanceId: 'bench' }, batchOf(b, size, tokens, now));
  }
}

/** A rollback that carries a result out of the transaction. */
class Measured<T> extends Error {
  constructor(readonly value: T) {
    super('rolled back after measuring');
  }
}

/** Runs `run` on the schema before migration 0010: in a transaction that drops its index, rolled back. */
async function withoutBrin<T>(database: Database, run: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  try {
    await database.knex.transaction(async (trx) => {
      await trx.raw('DROP INDEX issued_tokens_expires_at_brin');
      throw new Measured(await run(trx));
    });
  } catch (error) {
    if (error instanceof Measured) return error.value as T;
    throw error;
  }
  throw new Error('unreachable: the transaction always rolls back');
}

/** The queries, named as the report runs them; then the whole report, unfiltered and filtered. */
function reportQueries(database: Database, config: TetherConfig, window: ReportWindow): [string, () => Promise<unknown>][] {
  const all: ReportFilter = {};
  const named = Object.entries(REPORT_QUERIES).map(([name, query]): [string, () => Promise<unknown>] => [name, () => query(database.knex, window, all)]);
  return [
    ['reportWindow', () => reportWindow(database.knex, WINDOW_DAYS)],
    ...named,
    ['tokenFacts, without the BRIN index (0009)', () => withoutBrin(database, (trx) => tokenFacts(trx, window, all))],
    ['recordsSince', () => recordsSince(database.knex)],
    ['tokenFacts --client', () => REPORT_QUERIES.tokenFacts(database.knex, window, { clientId: 'client-7' })],
    ['tokenFacts --window 7d', async () => tokenFacts(database.knex, await reportWindow(database.knex, 7), all)],
    ['tokenFacts --window 7d, without the BRIN index (0009)', () => withoutBrin(database, async (trx) => tokenFacts(trx, await reportWindow(trx, 7), all))],
    ['tokenFacts --window 1d', async () => tokenFacts(database.knex, await reportWindow(database.knex, 1), all)],
    ['tokenFacts --window 1d, without the BRIN index (0009)', () => withoutBrin(database, async (trx) => tokenFacts(trx, await reportWindow(trx, 1), all))],
    ['tether report (30d)', () => exposureReport(database.knex, config, { days: WINDOW_DAYS })],
    ['tether report --window 7d', () => exposureReport(database.knex, config, { days: 7 })],
    ['tether report --window 7d, without the BRIN index (0009)', () => withoutBrin(database, (trx) => exposureReport(trx, config, { days: 7 }))],
    ['tether report --client', () => exposureReport(database.knex, config, { days: WINDOW_DAYS, clientId: 'client-7' })],
    ['tether report --resource', () => exposureReport(database.knex, config, { days: WINDOW_DAYS, resource: resourceUri(2) })],
  ];
}

/** The scan nodes of a plan (EXPLAIN FORMAT JSON), depth first. */
function scansOf(node: Record<string, unknown>): string[] {
  const type = String(node['Node Type']);
  const index = node['Index Name'] ? ` using ${String(node['Index Name'])}` : '';
  const relation = node['Relation Name'] ? ` on ${String(node['Relation Name'])}` : '';
  // A Bitmap Index Scan names its index, its Bitmap Heap Scan parent the table.
  const own = /Scan/.test(type) && (index || relation) ? [`${type}${index}${relation}`] : [];
  return [...own, ...((node.Plans as Record<string, unknown>[] | undefined) ?? []).flatMap(scansOf)];
}

/**
 * The plan of each report query as the report sends it: the query runs against a stand-in whose
 * `raw` records the statement (and answers no rows), which is then explained on the real database.
 */
async function plansOf(db: Knex | Knex.Transaction, window: ReportWindow, label: string): Promise<Record<string, string[]>> {
  const plans: Record<string, string[]> = {};
  for (const [name, query] of Object.entries(REPORT_QUERIES)) {
    const statements: [string, unknown][] = [];
    const recorder = { raw: (sql: string, bindings: unknown) => { statements.push([sql, bindings]); return Promise.resolve({ rows: [] }); } };
    await query(recorder as unknown as Database['knex'], window, {});
    const [sql, bindings] = statements[0]!;
    const result = rowsOfExplain(await db.raw(`EXPLAIN (FORMAT JSON) ${sql}`, bindings as never));
    plans[`${name} (${label})`] = [...new Set(scansOf(result))];
  }
  return plans;
}

function rowsOfExplain(result: unknown): Record<string, unknown> {
  const [row] = (result as { rows: Record<string, unknown>[] }).rows;
  const plan = row!['QUERY PLAN'];
  const parsed = (typeof plan === 'string' ? JSON.parse(plan) : plan) as { Plan: Record<string, unknown> }[];
  return parsed[0]!.Plan;
}

async function tableSizes(database: Database): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const table of ['issued_tokens', 'use_events', 'use_rollups']) {
    const { rows } = (await database.knex.raw('SELECT pg_total_relation_size(?::regclass) AS bytes', [table])) as { rows: { bytes: string }[] };
    sizes[table] = round(Number(rows[0]!.bytes) / 2 ** 20, 1);
  }
  return sizes;
}

async function countOf(database: Database, table: string): Promise<number> {
  const { rows } = (await database.knex.raw(`SELECT count(*)::bigint AS n FROM ${table}`)) as { rows: { n: string }[] };
  return Number(rows[0]!.n);
}

async function measureBackend(context: BenchContext, backend: 'postgres' | 'pglite', database: Database, events: number, tokens: number): Promise<ReportBackendResult> {
  const { log } = context;
  await migrateToLatest(database.knex);
  const now = new Date();
  let started = performance.now();
  await seedTokens(database, tokens, now);
  const seedTokensSeconds = round((performance.now() - started) / 1000, 1);
  started = performance.now();
  await appendEvents(database, events, tokens, now);
  const appendSeconds = round((performance.now() - started) / 1000, 1);
  await database.knex.raw('VACUUM ANALYZE issued_tokens');
  await database.knex.raw('VACUUM ANALYZE ledger_events');
  await database.knex.raw('VACUUM ANALYZE use_events');
  await database.knex.raw('VACUUM ANALYZE use_rollups');
  const [useEvents, rollups] = [await countOf(database, 'use_events'), await countOf(database, 'use_rollups')];
  log(`report (${backend}): ${tokens} tokens in ${seedTokensSeconds} s; ${useEvents} use events appended in ${appendSeconds} s (${BATCH} a batch), ${rollups} rollup rows`);

  const config = benchConfig();
  const window = await reportWindow(database.knex, WINDOW_DAYS);
  const queries = reportQueries(database, config, window);
  const timings = queries.map(([query]) => ({ query, ms: [] as number[] }));
  const repetitions = context.options.quick ? 3 : 9;
  for (let repetition = -1; repetition < repetitions; repetition++) {
    for (const [index, [, run]] of queries.entries()) {
      const begun = performance.now();
      await run();
      // Repetition -1 warms the caches and is not kept.
      if (repetition >= 0) timings[index]!.ms.push(round(performance.now() - begun, 2));
    }
  }
  log(`report (${backend}): ${timings.map((timing) => `${timing.query} ${median(timing.ms)} ms`).join('; ')}`);
  const week = await reportWindow(database.knex, 7);
  const plans = { ...await plansOf(database.knex, window, '30d'), ...await plansOf(database.knex, week, '7d') };
  plans['tokenFacts (7d, without the BRIN index)'] = await withoutBrin(database, async (trx) => (await plansOf(trx, week, '7d'))['tokenFacts (7d)']!);
  log(`report (${backend}) plans: ${Object.entries(plans).map(([query, scans]) => `${query}: ${scans.join(', ')}`).join('; ')}`);
  return { backend, seedTokensSeconds, appendSeconds, useEvents, rollups, sizesMB: await tableSizes(database), timings, plans };
}

/** Generous bounds: seeding statements run for seconds; the report's own queries are what is measured. */
const BENCH_TIMEOUTS = { statementTimeout: 600_000, acquireTimeout: 600_000, connectTimeout: 10_000 };

export async function reportSection(context: BenchContext): Promise<ReportBenchResult> {
  const { log, options } = context;
  const events = options.reportEvents;
  const tokens = options.quick ? 60_000 : 300_000;
  const results: ReportBackendResult[] = [];

  const database = `${context.benchDatabase}_report`;
  const admin = new pg.Client({ connectionString: context.postgresAdminUrl });
  let postgres = true;
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
  } catch (error) {
    log(`PostgreSQL at ${context.postgresAdminUrl} unavailable (${(error as Error).message}): the report section measures PGlite only`);
    postgres = false;
  }
  if (postgres) {
    const opened = await openDatabase({ url: databaseUrl(context.postgresAdminUrl, database), timeouts: BENCH_TIMEOUTS });
    try {
      results.push(await measureBackend(context, 'postgres', opened, events, tokens));
    } finally {
      await opened.close();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch((error: Error) => log(`could not drop ${database}: ${error.message}`));
    }
  }
  await admin.end().catch(() => undefined);

  const embedded = await openDatabase({ memory: true, timeouts: BENCH_TIMEOUTS });
  try {
    results.push(await measureBackend(context, 'pglite', embedded, events, tokens));
  } finally {
    await embedded.close();
  }
  return { events, tokens, batchSize: BATCH, results };
}

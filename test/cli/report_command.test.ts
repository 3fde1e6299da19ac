import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { USE_REFUSAL_REASONS } from 'tether-oauth-resource-server';
import { runCli } from '../../src/cli/program.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { openTestDatabase } from '../support/database.js';
import { Captured } from './cli_support.js';
import { ELSEWHERE, ORDERS, PAYMENTS, refusalCount, reportConfig, seedReportWorld, type ReportTimes } from '../ledger/report_world.js';

/**
 * `tether report` through the real program, on the database the configuration names (PGlite under
 * dataDir, or PostgreSQL with DATABASE_URL), seeded with the report's world: --json, the text
 * report, filters, and the exit codes of command_conventions (0 done, 1 nothing matched, 2 usage).
 */

let directory: string;
let configFile: string;
let times: ReportTimes;
let postgres: (Database & { url?: string }) | undefined;
const savedDatabaseUrl = process.env.DATABASE_URL;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'tether-report-'));
  let database: Database & { url?: string };
  if (savedDatabaseUrl) {
    database = postgres = await openTestDatabase();
  } else {
    database = await openDatabase({ directory: path.join(directory, 'db') });
    await migrateToLatest(database.knex);
  }
  times = await seedReportWorld(database.knex);
  // PGlite under dataDir has one owner: the commands open it once the seeding is done.
  if (!savedDatabaseUrl) await database.close();
  configFile = path.join(directory, 'tether.config.yaml');
  const config = { issuer: 'https://localhost:8443', dataDir: directory, ...(postgres?.url ? { databaseUrl: postgres.url } : {}), ...reportConfig() };
  await writeFile(configFile, JSON.stringify(config, null, 2));
});

afterAll(async () => {
  await postgres?.close();
  await rm(directory, { recursive: true, force: true });
});

async function tether(...args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const out = new Captured();
  const err = new Captured();
  // As `tether start` resolves it: with DATABASE_URL and a configuration file, PostgreSQL.
  const env = postgres?.url ? { ...process.env, DATABASE_URL: postgres.url } : process.env;
  if (postgres?.url) process.env.DATABASE_URL = postgres.url;
  try {
    const exitCode = await runCli(['node', 'tether', ...args, '--config', configFile], { out, err }, env);
    return { stdout: out.text, stderr: err.text, exitCode };
  } finally {
    process.exitCode = 0;
    if (savedDatabaseUrl) process.env.DATABASE_URL = savedDatabaseUrl;
  }
}

test('--json: the report in snake_case, exit code 0', async () => {
  const { stdout, stderr, exitCode } = await tether('report', '--json');
  expect({ stderr, exitCode }).toEqual({ stderr: '', exitCode: 0 });
  const report = JSON.parse(stdout) as Record<string, unknown>;
  expect(Object.keys(report)).toEqual(['window', 'filter', 'records_since', 'clients', 'resources', 'grants', 'idle_clients', 'refusals', 'lateral_movement', 'replays', 'revoked_presented']);
  expect(report).toMatchObject({
    window: { days: 30, from: times.from30.toISOString() },
    idle_clients: ['batch', 'edge-out'],
    lateral_movement: [
      { presented_at: PAYMENTS, token_audience: ORDERS, audience_known: true, client_id: 'shop', count: 2 },
      { presented_at: ORDERS, token_audience: ELSEWHERE, audience_known: false, client_id: 'shop', count: 1 },
    ],
    revoked_presented: [
      { resource: ORDERS, client_id: 'shop', outcome: 'accepted', count: 1 },
      { resource: ORDERS, client_id: 'shop', outcome: 'refused', count: refusalCount('revoked') },
    ],
  });
  expect((report.refusals as unknown[]).length).toBe(USE_REFUSAL_REASONS.length + 1);
});

test('the text report: sections, suggestions, idle clients, the alarms', async () => {
  const { stdout, exitCode } = await tether('report');
  expect(exitCode).toBe(0);
  expect(stdout).toMatch(/^exposure report: 30 days, \d{4}-\d\d-\d\d 00:00:00Z to .+ \(whole UTC days; use is summed per day\)$/m);
  expect(stdout).toContain('the ledger has no events yet: idleness has no history to go by');
  expect(stdout).toMatch(/^shop +2 +3 +5 .+ active$/m);
  expect(stdout).toMatch(/^batch +0 +0 +0 +- +- +IDLE$/m);
  expect(stdout).toMatch(/^orders-api +0 +0 +0 +- +- +no grants$/m);
  expect(stdout).toMatch(/^resting +.+ suspended$/m);
  expect(stdout).toMatch(/^former +1 +1 +0 .+ not configured$/m);
  expect(stdout).toContain('idle for 30 days (no issuance, no use): candidates to suspend (tether clients suspend <id>)\n  batch\n  edge-out\n');
  expect(stdout).toContain(`suggest narrowing\n  shop on ${ORDERS}: orders:write never required in 30 days; narrow the grant to orders:read\n`);
  expect(stdout).toContain(`  shop on ${PAYMENTS}: no use in 30 days although the API reports use; remove the grant?\n`);
  expect(stdout).toMatch(new RegExp(`^auditor +https://reports\\.report\\.test +1 +0 +- +reports:read +- +\\(API reports no use\\)$`, 'm'));
  expect(stdout).toMatch(new RegExp(`^${PAYMENTS.replaceAll('.', '\\.')} +${ORDERS.replaceAll('.', '\\.')} +shop +2 `, 'm'));
  expect(stdout).toContain(`${ELSEWHERE} (not a Tether API)`);
  expect(stdout).toMatch(new RegExp(`^${ORDERS.replaceAll('.', '\\.')} +shop +ACCEPTED +1 `, 'm'));
  for (const reason of USE_REFUSAL_REASONS) expect(stdout).toMatch(new RegExp(`^${ORDERS.replaceAll('.', '\\.')} +${reason} +${refusalCount(reason)} `, 'm'));
});

test('filters and window: --client, --resource, --window', async () => {
  const shop = JSON.parse((await tether('report', '--client', 'shop', '--window', '7d', '--json')).stdout) as Record<string, unknown>;
  expect(shop).toMatchObject({ window: { days: 7 }, filter: { client: 'shop', resource: null }, idle_clients: [] });
  expect((shop.clients as { client_id: string }[]).map((row) => row.client_id)).toEqual(['shop']);

  const payments = JSON.parse((await tether('report', '--resource', PAYMENTS, '--json')).stdout) as Record<string, unknown>;
  expect(payments).toMatchObject({ filter: { client: null, resource: PAYMENTS }, refusals: [{ resource: PAYMENTS, reason: 'wrong_audience', count: 2 }] });

  const longer = JSON.parse((await tether('report', '--window', '31', '--json')).stdout) as Record<string, unknown>;
  expect(longer).toMatchObject({ window: { days: 31 }, idle_clients: [] });
});

test('a client or API nobody knows: one line, exit code 1', async () => {
  expect(await tether('report', '--client', 'nobody')).toEqual({
    stdout: '', exitCode: 1,
    stderr: 'tether: no client "nobody" in the configuration or in the window\'s records: nothing to report (tether clients list shows them)\n',
  });
  expect(await tether('report', '--resource', 'https://nowhere.example')).toMatchObject({ stdout: '', exitCode: 1, stderr: expect.stringMatching(/^tether: no resource "https:\/\/nowhere\.example" in the configuration/) });
});

test.each([
  [['--window', '12h']], [['--window', '0d']], [['--window', '3661d']], [['--window']], [['--state', 'active']], [['extra-argument']],
])('bad flags %j: usage, exit code 2, nothing printed on stdout', async (args) => {
  const { stdout, stderr, exitCode } = await tether('report', ...args);
  expect({ stdout, exitCode }).toEqual({ stdout: '', exitCode: 2 });
  expect(stderr).toMatch(/^error: /);
});

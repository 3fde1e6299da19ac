import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jest } from '@jest/globals';
import { decodeJwt } from 'jose';
import { runCli } from '../../src/cli/program.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { startTether } from '../../src/testing/start_tether.js';
import { openTestDatabase } from '../support/database.js';
import { LedgerClient, ORDERS, REPORTS, ledgerConfig } from '../ledger/ledger_config.js';

/**
 * The inventory commands through the real `tether` program: the configuration file and database are
 * resolved the way `tether migrate` resolves them (embedded PGlite under dataDir, or PostgreSQL with
 * DATABASE_URL), against a database that real token requests went through.
 */

let directory: string;
let configFile: string;
let databaseUrl: string | undefined;
let tokens: string[];
const savedDatabaseUrl = process.env.DATABASE_URL;

/** A database for one Tether, then for the commands: on PostgreSQL the test database, else PGlite under dataDir. */
async function openSharedDatabase(): Promise<Database> {
  if (savedDatabaseUrl) {
    const database = await openTestDatabase();
    databaseUrl = database.url;
    return database;
  }
  const database = await openDatabase({ directory: path.join(directory, 'db') });
  await migrateToLatest(database.knex);
  return database;
}

let postgresTestDatabase: Database | undefined;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'tether-cli-'));
  const database = await openSharedDatabase();
  const tether = await startTether({ config: ledgerConfig(), database });
  const client = new LedgerClient(tether);
  tokens = [await client.accessToken('worker', ORDERS), await client.accessToken('worker', REPORTS), await client.accessToken('idle', ORDERS)];
  await tether.close();
  // PGlite under dataDir is locked by its process: the commands can open it only once the server is gone.
  if (savedDatabaseUrl) postgresTestDatabase = database;
  else await database.close();

  configFile = path.join(directory, 'tether.config.yaml');
  const config = { issuer: 'https://localhost:8443', dataDir: directory, ...(databaseUrl ? { databaseUrl } : {}), ...ledgerConfig() };
  await writeFile(configFile, JSON.stringify(config, null, 2));
});

afterAll(async () => {
  await postgresTestDatabase?.close();
  await rm(directory, { recursive: true, force: true });
});

/** Runs `tether …args --config <file>` in-process and returns what it printed. */
async function tether(...args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  // tether start/migrate semantics: with DATABASE_URL and a configuration file, PostgreSQL.
  if (databaseUrl) process.env.DATABASE_URL = databaseUrl;
  process.exitCode = 0;
  try {
    const exitCode = await runCli(['node', 'tether', ...args, '--config', configFile]);
    return { stdout, stderr, exitCode };
  } finally {
    process.exitCode = 0;
    out.mockRestore();
    err.mockRestore();
    if (savedDatabaseUrl) process.env.DATABASE_URL = savedDatabaseUrl;
  }
}

describe('tether tokens / clients / ledger through the program', () => {
  test('find and revoke every live token of one client', async () => {
    const listed = await tether('tokens', 'list', '--client', 'worker', '--state', 'active', '--json');
    const live = JSON.parse(listed.stdout) as { token_id: string }[];
    expect(live.map((token) => token.token_id)).toContain(decodeJwt(tokens[0]!).jti);
    expect(live).toHaveLength(2);

    const revoked = await tether('tokens', 'revoke', '--client', 'worker', '--reason', 'rotation');
    expect(revoked.stdout).toMatch(/^revoked 2 tokens \(every live token of client worker, with tokens exchanged from them\)$/m);

    expect(JSON.parse((await tether('tokens', 'list', '--client', 'worker', '--state', 'active', '--json')).stdout)).toEqual([]);
    expect(JSON.parse((await tether('tokens', 'list', '--client', 'idle', '--state', 'active', '--json')).stdout)).toHaveLength(1);
  });

  test('clients list, suspend, ledger tail', async () => {
    expect((await tether('clients', 'list')).stdout).toMatch(/^idle\s+team-idle\s+ledger tests: idle\s+https:\/\/orders\.ledger\.test\s+1\s+active$/m);
    expect((await tether('clients', 'suspend', 'idle', '--reason', 'decommissioned')).stdout).toMatch(/^suspended idle: it gets no new tokens\nrevoked 1 live token/m);
    const tail = await tether('ledger', 'tail', '-n', '2', '--json');
    const events = tail.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { type: string; actor: string });
    expect(events.map((event) => event.type)).toEqual(['client.suspended', 'token.revoked']);
    expect(events[0]!.actor).toMatch(/^cli:.+@.+$/);
  });

  test('tokens list --issuer filters by external issuer (none of these tokens was issued for an external identity)', async () => {
    expect(JSON.parse((await tether('tokens', 'list', '--json')).stdout).length).toBeGreaterThan(0);
    expect(JSON.parse((await tether('tokens', 'list', '--issuer', 'https://kubernetes.default.svc', '--json')).stdout)).toEqual([]);
  });

  test('a refusal is one line on stderr and exit code 1', async () => {
    const { stdout, stderr, exitCode } = await tether('tokens', 'show', 'no-such-token');
    expect(stdout).toBe('');
    expect(stderr).toBe('tether: no token with id "no-such-token" in the ledger\n');
    expect(exitCode).toBe(1);
  });
});

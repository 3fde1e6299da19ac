import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { everyCommand } from '../../src/cli/command_conventions.js';
import { buildProgram, runCli } from '../../src/cli/program.js';
import { openTestDatabase } from '../support/database.js';
import { Captured } from './cli_support.js';

/**
 * The conventions every `tether` command follows (README "Command-line conventions"), each checked
 * over a table of commands through the real program: --json with snake_case names wherever data is
 * printed; ids that begin with "-"; exit codes 0 done / 1 nothing matched or refused / 2 usage or
 * configuration; a known error is one line without a stack, which --debug adds.
 */

const ENCRYPTION_SECRET = 'conventions-test-key-encryption-secret-0123';
const savedDatabaseUrl = process.env.DATABASE_URL;
let directory: string;
let configFile: string;
let postgres: Awaited<ReturnType<typeof openTestDatabase>> | undefined;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'tether-conventions-'));
  if (savedDatabaseUrl) postgres = await openTestDatabase();
  configFile = path.join(directory, 'tether.config.yaml');
  await writeFile(configFile, JSON.stringify({
    issuer: 'https://auth.conventions.test',
    dataDir: path.join(directory, 'data'),
    ...(postgres ? { databaseUrl: postgres.url } : {}),
    listeners: { http: { host: '127.0.0.1', port: 1 } },
    signing: { encryptionSecret: ENCRYPTION_SECRET },
    resources: [{ uri: 'https://api.conventions.test', scopes: ['read'] }],
    clients: [{ id: 'worker', owner: 'team', purpose: 'conventions', binding: 'dpop', auth: { method: 'client_secret_basic', secret: 'conventions-secret-0123456789' }, resources: { 'https://api.conventions.test': ['read'] } }],
  }));
});

afterAll(async () => {
  await postgres?.close();
  await rm(directory, { recursive: true, force: true });
});

interface Run { stdout: string; stderr: string; exitCode: number }

/** `tether …args` in-process, on this file's configuration unless `config` says otherwise. */
async function tether(args: string[], { config = configFile as string | null, env = {} as NodeJS.ProcessEnv } = {}): Promise<Run> {
  const out = new Captured();
  const err = new Captured();
  // tether start/migrate semantics: with DATABASE_URL and a configuration file, PostgreSQL.
  if (postgres) process.env.DATABASE_URL = postgres.url;
  else delete process.env.DATABASE_URL;
  try {
    // Before a `--`: everything after it is an argument.
    const end = args.includes('--') ? args.indexOf('--') : args.length;
    const argv = [...args.slice(0, end), ...(config ? ['--config', config] : []), ...args.slice(end)];
    const exitCode = await runCli(['node', 'tether', ...argv], { out, err }, env);
    return { stdout: out.text, stderr: err.text, exitCode };
  } finally {
    process.exitCode = undefined;
    if (savedDatabaseUrl) process.env.DATABASE_URL = savedDatabaseUrl;
    else delete process.env.DATABASE_URL;
  }
}

const pathOf = (command: Command): string => {
  const names: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent) names.unshift(current.name());
  return names.join(' ');
};

/** Leaf commands: the ones that run something. */
const leaves = everyCommand(buildProgram()).filter((command) => command.commands.length === 0 && command.parent);

describe('--json wherever data is printed, with snake_case names', () => {
  // The servers print a banner or logs, not data.
  const SERVERS = ['dev', 'start'];

  test('every command but the servers has --json', () => {
    const without = leaves.filter((command) => !SERVERS.includes(pathOf(command)) && !command.options.some((option) => option.long === '--json'));
    expect(without.map(pathOf)).toEqual([]);
    expect(leaves.map(pathOf).sort()).toEqual([
      'authz', 'clients list', 'clients resume', 'clients show', 'clients suspend', 'dev', 'health', 'keys list', 'keys retire', 'keys rotate', 'ledger prune',
      'ledger tail', 'migrate', 'pki init', 'probe', 'report', 'start', 'tokens list', 'tokens revoke', 'tokens show',
    ]);
  });

  /** Every key of every object in `value` that names a field (URIs and other data used as keys excepted). */
  const fieldNames = (value: unknown): string[] => {
    if (Array.isArray(value)) return value.flatMap(fieldNames);
    if (value === null || typeof value !== 'object') return [];
    return Object.entries(value).flatMap(([key, child]) => [...(/^[A-Za-z][A-Za-z0-9_]*$/.test(key) ? [key] : []), ...fieldNames(child)]);
  };

  test.each([
    [['migrate', '--json']],
    [['keys', 'rotate', '--json']],
    [['keys', 'list', '--json']],
    [['tokens', 'list', '--json']],
    [['tokens', 'revoke', '--client', 'worker', '--json']],
    [['clients', 'list', '--json']],
    [['clients', 'show', 'worker', '--json']],
    [['clients', 'suspend', 'worker', '--json']],
    [['clients', 'resume', 'worker', '--json']],
    [['ledger', 'prune', '--before', '1d', '--dry-run', '--json']],
    [['report', '--json']],
  ])('tether %j prints JSON whose names are all snake_case', async (args) => {
    const run = await tether(args);
    expect({ exitCode: run.exitCode, stderr: run.stderr }).toEqual({ exitCode: 0, stderr: '' });
    const names = fieldNames(JSON.parse(run.stdout));
    expect(names.filter((name) => !/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(name))).toEqual([]);
  });

  test('ledger tail --json: one snake_case object per line; health --json even when not ready', async () => {
    const tail = await tether(['ledger', 'tail', '-n', '3', '--json']);
    const events = tail.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.map((event) => event.type)).toEqual(['token.revoked', 'client.suspended', 'client.resumed'].filter((type) => events.some((event) => event.type === type)));
    expect(fieldNames(events).filter((name) => !/^[a-z][a-z0-9_]*$/.test(name))).toEqual([]);

    const health = await tether(['health', '--json', '--timeout', '2000']);
    expect(health.exitCode).toBe(1);
    expect(JSON.parse(health.stdout)).toEqual({ ready: false, listeners: [{ url: 'http://127.0.0.1:1/readyz', ready: false, answer: 'ECONNREFUSED' }] });
  });
});

describe('an id that begins with "-" is an id, bare or after --', () => {
  const id = '-Ab3dEf6hIjKlMnOpQrStUvWxYz0123456789_-xyz';
  test.each([
    [['tokens', 'show'], `no token with id "${id}" in the ledger`],
    [['tokens', 'revoke'], `no token with id "${id}" in the ledger`],
    [['clients', 'show'], `no client "${id}" in the configuration or the ledger`],
    [['clients', 'suspend'], `no client "${id}" in the configuration`],
    [['clients', 'resume'], `no client "${id}" in the configuration`],
    [['keys', 'retire'], `no signing key ${id}`],
  ])('tether %j <id>: not found (exit 1), never "unknown option"', async (command, notFound) => {
    for (const args of [[...command, id], [...command, '--json', '--', id]]) {
      const run = await tether(args);
      expect(run).toEqual({
        stdout: '', exitCode: 1,
        stderr: `tether: ${notFound} (if "${id}" was meant as an option, it is not one of this command's: --help lists them)\n`,
      });
    }
  });

  test('a mistyped option next to an id is too many arguments, a usage error', async () => {
    const run = await tether(['tokens', 'show', 'some-id', '--jsno']);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(/^error: too many arguments for 'show'/);
  });
});

describe('exit codes: 0 done, 1 nothing matched or refused, 2 usage or configuration', () => {
  test.each([
    [['--version'], 0, /^$/, null],
    [['keys', 'list'], 0, /^$/, undefined],
    [['tokens', 'revoke', '--client', 'worker'], 0, /^$/, undefined],
    [['tokens', 'revoke', '--client', 'wroker'], 1, /^tether: no client "wroker" in the configuration or the ledger: nothing revoked/, undefined],
    [['tokens', 'revoke', '--resource', 'https://api.conventions.test/'], 1, /^tether: no resource "https:\/\/api\.conventions\.test\/" in the configuration or the ledger/, undefined],
    [['clients', 'suspend', 'wroker'], 1, /^tether: no client "wroker" in the configuration\n$/, undefined],
    [['clients', 'show', 'wroker'], 1, /^tether: no client "wroker"/, undefined],
    [['tokens', 'show', 'no-such-token'], 1, /^tether: no token with id "no-such-token" in the ledger\n$/, undefined],
    [['health'], 1, /^$/, undefined],
    [['tokens', 'revoke'], 2, /^tether: name exactly one of: a token id, --client <id>, --resource <uri>\n$/, undefined],
    [['tokens', 'list', '--state', 'dead'], 2, /^error: option '--state <state>' argument 'dead' is invalid/, undefined],
    [['ledger', 'prune', '--before', 'soon'], 2, /^tether: --before must be/, undefined],
    [['ledger', 'tail', '--type', 'nonsense'], 2, /^tether: --type must be one of/, undefined],
    [['clients', 'list', '--jsno'], 2, /^error: unknown option '--jsno'/, undefined],
    [['nonsense'], 2, /^error: unknown command 'nonsense'/, null],
    [['tokens', 'list'], 2, /^tether: .*missing\.yaml: cannot read the configuration file \(ENOENT\)\n$/, 'missing.yaml'],
  ] as [string[], number, RegExp, string | null | undefined][])('tether %j exits %i', async (args, exitCode, stderr, config) => {
    const run = await tether(args, { config: config === undefined ? configFile : config && path.join(directory, config) });
    expect({ exitCode: run.exitCode, stderr: run.stderr }).toEqual({ exitCode, stderr: expect.stringMatching(stderr) });
  });
});

describe('a known error is one line without a stack; --debug shows the stack', () => {
  const unreachable = async () => {
    const file = path.join(directory, 'unreachable.yaml');
    await writeFile(file, JSON.stringify({
      issuer: 'https://auth.conventions.test', databaseUrl: 'postgres://tether:hunter2-secret@127.0.0.1:1/tether', database: { connectTimeout: 1, acquireTimeout: 1 },
      resources: [{ uri: 'https://api.conventions.test' }],
      clients: [{ id: 'worker', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: 'conventions-secret-0123456789' } }],
    }));
    return file;
  };

  test.each([
    ['a configuration error', () => Promise.resolve(path.join(directory, 'missing.yaml')), ['tokens', 'list'], 2, /^tether: \S+missing\.yaml: cannot read the configuration file \(ENOENT\)$/],
    ['an unreachable database', unreachable, ['tokens', 'list'], 1,
      /^tether: cannot connect to the database at postgres:\/\/tether:\*\*\*@127\.0\.0\.1:1\/tether \(ECONNREFUSED\): is PostgreSQL running there and does the URL name it\? It is set by databaseUrl in \S+unreachable\.yaml \(DATABASE_URL overrides it\)/],
    ['an unreachable database (migrate)', unreachable, ['migrate'], 1, /^tether: cannot connect to the database at postgres:\/\/tether:\*\*\*@127\.0\.0\.1:1\/tether \(ECONNREFUSED\)/],
  ] as [string, () => Promise<string>, string[], number, RegExp][])('%s', async (_what, configOf, args, exitCode, line) => {
    const config = await configOf();
    // Without DATABASE_URL: the configuration file names the database.
    const withoutEnv = async (extra: string[]) => {
      const saved = process.env.DATABASE_URL;
      delete process.env.DATABASE_URL;
      const out = new Captured();
      const err = new Captured();
      try {
        return { exitCode: await runCli(['node', 'tether', ...extra, ...args, '--config', config], { out, err }, {}), stderr: err.text };
      } finally {
        process.exitCode = undefined;
        if (saved !== undefined) process.env.DATABASE_URL = saved;
      }
    };
    const plain = await withoutEnv([]);
    expect(plain.exitCode).toBe(exitCode);
    // (knex's own "Acquire connection error" warnings, with their stacks, are the logger's to route.)
    expect(plain.stderr.trimEnd().split('\n').filter((text) => !text.startsWith('knex: ') && !/^\s+at /.test(text))).toEqual([expect.stringMatching(line)]);
    expect(plain.stderr).not.toContain('hunter2');
    const tetherLines = plain.stderr.split('\n').filter((text) => text.startsWith('tether: '));
    expect(tetherLines).toHaveLength(1);

    const debug = await withoutEnv(['--debug']);
    expect(debug.exitCode).toBe(exitCode);
    expect(debug.stderr).toMatch(/^ +at /m);
  });
});

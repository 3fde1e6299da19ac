import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadSigningKeys, listSigningKeys } from '../../src/keys/signing_keys.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { openTestDatabase } from '../support/database.js';
import { freePort } from '../support/nginx.js';

// Key encryption at rest, as an operator meets it (issue 12 item 7): real `tether` processes.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
const SECRET = 'the-fleet-key-encryption-secret-0123456789';
const WRONG_SECRET = 'a-mistyped-key-encryption-secret-0123456789';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tether …` to its end (or, for a server, until `until` appears on stderr, then stops it). */
function runTether(args: string[], env: Record<string, string | undefined>, cwd: string, until?: string): Promise<Finished> {
  const childEnv: Record<string, string | undefined> = { ...process.env, TETHER_LOG_LEVEL: 'info', TETHER_KEY_ENCRYPTION_SECRET: undefined, ...env };
  for (const [name, value] of Object.entries(childEnv)) if (value === undefined) delete childEnv[name];
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'main.ts'), ...args], { cwd, env: childEnv });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (until && stderr.includes(until)) child.kill('SIGTERM');
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** stderr without Node's own warnings (experimental features and the like). */
function tetherLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '' && !/^\(node:\d+\)|^\(Use `node/.test(line));
}

let workdir: string;

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-keys-'));
});
afterEach(async () => {
  await rm(workdir, { recursive: true, force: true });
});

async function writeConfig(extra: string[] = []): Promise<void> {
  await writeFile(path.join(workdir, 'tether.config.yaml'), [
    'issuer: https://auth.keys.test',
    `listeners: { http: { port: ${await freePort()} } }`,
    'dataDir: data',
    'resources: [{ uri: "https://api.keys.test", scopes: [read] }]',
    'clients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" }, resources: { "https://api.keys.test": [read] } }]',
    ...extra,
    '',
  ].join('\n'));
}

/**
 * The database `tether` will use, with one signing key sealed under SECRET: the given PostgreSQL
 * database, or the embedded one under the config's dataDir.
 */
async function seededDatabase(): Promise<{ env: Record<string, string | undefined>; database: Database; close(): Promise<void> }> {
  if (process.env.DATABASE_URL) {
    const database = await openTestDatabase();
    await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    return { env: { DATABASE_URL: database.url }, database, close: () => database.close() };
  }
  const database = await openDatabase({ directory: path.join(workdir, 'data', 'db') });
  await migrateToLatest(database.knex);
  await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: SECRET });
  await database.close();
  return {
    env: { DATABASE_URL: undefined },
    database,
    close: async () => undefined,
  };
}

describe('tether start and the key-encryption secret', () => {
  test('without a secret, tether start exits 2 with one line saying what to set; nothing starts', async () => {
    await writeConfig(['databaseUrl: postgres://127.0.0.1:1/never-opened']);
    const run = await runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: undefined }, workdir);
    expect(run.code).toBe(2);
    expect(tetherLines(run.stderr)).toEqual([
      'tether: tether.config.yaml: signing.encryptionSecret: tether start keeps signing keys encrypted at rest; set TETHER_KEY_ENCRYPTION_SECRET ' +
        '(at least 32 random characters, e.g. openssl rand -base64 32), or set signing.allowPlaintextKeys: true to store them in plaintext',
    ]);
  });

  test('a secret shorter than 32 characters: exit 2, the secret not echoed', async () => {
    await writeConfig(['databaseUrl: postgres://127.0.0.1:1/never-opened']);
    const run = await runTether(['start', '--config', 'tether.config.yaml'], { TETHER_KEY_ENCRYPTION_SECRET: 'short-secret-0123456789' }, workdir);
    expect(run.code).toBe(2);
    expect(tetherLines(run.stderr)).toEqual(['tether: tether.config.yaml: signing.encryptionSecret: use at least 32 characters (e.g. openssl rand -base64 32) (set by TETHER_KEY_ENCRYPTION_SECRET)']);
  });

  test('a wrong secret: exit 2 with one line naming the problem, and no new key', async () => {
    await writeConfig();
    const seeded = await seededDatabase();
    try {
      // `tether start` on PostgreSQL; on the embedded database `tether dev`, which loads keys the same way.
      const command = process.env.DATABASE_URL ? 'start' : 'dev';
      const run = await runTether([command, '--config', 'tether.config.yaml'], { ...seeded.env, TETHER_KEY_ENCRYPTION_SECRET: WRONG_SECRET }, workdir);
      expect(run.code).toBe(2);
      expect(tetherLines(run.stderr)).toEqual([
        // Whichever comes first: reading the signing keys, or the DPoP nonce secret's write check.
        expect.stringMatching(/^tether: signing keys: (refusing to store a key: )?the configured key-encryption secret is not the one signing key \S+ was encrypted with$/),
      ]);
      const rotate = await runTether(['keys', 'rotate', '--config', 'tether.config.yaml'], { ...seeded.env }, workdir);
      expect(rotate.code).toBe(2);
      expect(tetherLines(rotate.stderr)).toEqual([
        expect.stringMatching(/^tether: signing keys: refusing to store a key in plaintext: the stored keys are encrypted at rest \(signing key \S+\); set TETHER_KEY_ENCRYPTION_SECRET to the secret the other instances use$/),
      ]);
      const database = process.env.DATABASE_URL ? seeded.database : await openDatabase({ directory: path.join(workdir, 'data', 'db') });
      try {
        expect(await listSigningKeys(database.knex)).toHaveLength(1);
      } finally {
        if (database !== seeded.database) await database.close();
      }
    } finally {
      await seeded.close();
    }
  });

  if (process.env.DATABASE_URL) {
    test('signing.allowPlaintextKeys: true starts, and says loudly at start what that means', async () => {
      const database = await openTestDatabase();
      try {
        await writeConfig(['signing: { allowPlaintextKeys: true }']);
        const run = await runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: database.url }, workdir, 'tether started');
        expect(run.stderr).toContain('tether started');
        const warning = tetherLines(run.stderr).filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { level: number; msg: string }).find((entry) => entry.level === 40);
        expect(warning?.msg).toBe('signing.allowPlaintextKeys is set: private signing keys and the DPoP nonce secret are stored UNENCRYPTED in the database; anyone who can read it can mint tokens. Set TETHER_KEY_ENCRYPTION_SECRET.');
      } finally {
        await database.close();
      }
    });

    test('with the secret, tether start stores the DPoP nonce secret and the signing key encrypted: no plaintext in either table', async () => {
      const database = await openTestDatabase();
      try {
        await writeConfig();
        const run = await runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: database.url, TETHER_KEY_ENCRYPTION_SECRET: SECRET }, workdir, 'tether started');
        expect(run.stderr).toContain('tether started');
        const secrets = (await database.knex('server_secrets').select('*')) as { name: string; secret: string }[];
        expect(secrets.map((row) => row.name)).toEqual(['dpop_nonce']);
        expect(JSON.parse(secrets[0]!.secret)).toMatchObject({ enc: 'tether-aes-256-gcm-v1' });
        const keys = (await database.knex('signing_keys').select('private_jwk')) as { private_jwk: Record<string, unknown> }[];
        expect(keys.map((row) => [row.private_jwk.enc, row.private_jwk.d])).toEqual([['tether-aes-256-gcm-v1', undefined]]);
      } finally {
        await database.close();
      }
    });
  }
});

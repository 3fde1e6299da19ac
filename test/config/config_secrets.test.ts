import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load_config.js';
import { runTetherToEnd } from '../cli/cli_support.js';
import { freePort } from '../support/ports.js';

/**
 * Issue 12 item 9: a configuration error never prints a secret, whatever the error and wherever the
 * secret came from (file, environment, a URL's password, a private JWK). Each secret below is a
 * marker that must appear in no message; every mistake of a file is reported at once, one per line.
 */

const FILE_SECRET = 'MARKER-file-client-secret-0123456789';
const ENV_SECRET = 'MARKER-env-encryption-secret-0123456789abcdef';
const SHORT_ENV_SECRET = 'MARKER-too-short';
const URL_PASSWORD = 'MARKERdbPassw0rd';
const JWK_D = 'MARKER-private-jwk-d-870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE';
const MARKERS = [FILE_SECRET, ENV_SECRET, SHORT_ENV_SECRET, URL_PASSWORD, JWK_D, 'MARKER'];

const PRIVATE_JWK = {
  kty: 'EC', crv: 'P-256', x: 'MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4', y: '4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM', d: JWK_D,
};

const minimal = () => ({
  issuer: 'https://auth.example',
  resources: [{ uri: 'https://api.example', scopes: ['read'] }],
  clients: [
    { id: 'c1', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: FILE_SECRET }, resources: { 'https://api.example': ['read'] } },
    { id: 'c2', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'private_key_jwt', jwks: { keys: [PRIVATE_JWK] } }, resources: { 'https://api.example': ['read'] } },
  ],
});
type Raw = ReturnType<typeof minimal>;
const client = (raw: Raw, index: number) => raw.clients[index] as Record<string, unknown>;

function errorOf(raw: unknown, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(raw, { source: 'tether.config.yaml', env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function expectNoMarker(text: string): void {
  for (const marker of MARKERS) expect(text).not.toContain(marker);
}

const SECRET_ENV = { TETHER_KEY_ENCRYPTION_SECRET: ENV_SECRET, DATABASE_URL: `postgres://tether:${URL_PASSWORD}@db.internal:5432/tether` };

describe('no secret in a configuration error, whatever the error', () => {
  test.each<[string, (raw: Raw) => void, NodeJS.ProcessEnv, string[]]>([
    [
      'a typo\'d key next to a client secret: only the key is named',
      (raw) => { (client(raw, 0).auth as Record<string, unknown>).secrt = 'x'; },
      {},
      ['tether.config.yaml: clients[0].auth: Unrecognized key: "secrt"'],
    ],
    [
      'an unknown top-level key, with the environment\'s secret and database password merged in',
      (raw) => { (raw as Record<string, unknown>).issuerr = 'https://x.example'; },
      SECRET_ENV,
      ['tether.config.yaml: (top level): Unrecognized key: "issuerr"'],
    ],
    [
      'a typo\'d key next to a private JWK',
      (raw) => { (client(raw, 1).auth as Record<string, unknown>).jwksUrl = 'https://x.example/jwks'; },
      {},
      ['tether.config.yaml: clients[1].auth: Unrecognized key: "jwksUrl"'],
    ],
    [
      'a JWK set with an unknown member',
      (raw) => { ((client(raw, 1).auth as Record<string, unknown>).jwks as Record<string, unknown>).private = [PRIVATE_JWK]; },
      {},
      ['tether.config.yaml: clients[1].auth.jwks: Unrecognized key: "private"'],
    ],
    [
      'a secret of the wrong type',
      (raw) => { (client(raw, 0).auth as Record<string, unknown>).secret = 987654321987; },
      {},
      ['tether.config.yaml: clients[0].auth.secret: Invalid input: expected string, received number'],
    ],
    [
      'an auth that is a string (the secret in the wrong place)',
      (raw) => { client(raw, 0).auth = FILE_SECRET; },
      {},
      ['tether.config.yaml: clients[0].auth: Invalid input: expected object, received string'],
    ],
    [
      'a short encryption secret from the environment',
      () => undefined,
      { TETHER_KEY_ENCRYPTION_SECRET: SHORT_ENV_SECRET },
      ['tether.config.yaml: signing.encryptionSecret: use at least 32 characters (e.g. openssl rand -base64 32) (set by TETHER_KEY_ENCRYPTION_SECRET)'],
    ],
    [
      'a DATABASE_URL that is not PostgreSQL: shown without its password',
      () => undefined,
      { DATABASE_URL: `mysql://tether:${URL_PASSWORD}@db.internal/tether` },
      ['tether.config.yaml: databaseUrl: expected a postgres:// or postgresql:// URL (got "mysql://tether:***@db.internal/tether") (set by DATABASE_URL)'],
    ],
    [
      'a cross-reference error in a client that has a secret, with secrets in the environment',
      (raw) => { client(raw, 0).resources = { 'https://unknown.example': ['read'] }; },
      SECRET_ENV,
      ['tether.config.yaml: clients[0].resources.https://unknown.example: unknown resource "https://unknown.example"'],
    ],
    [
      'a cross-reference to a resource URI with a password in it',
      (raw) => { client(raw, 0).resources = { [`https://user:${URL_PASSWORD}@api.example`]: ['read'] }; },
      {},
      ['tether.config.yaml: clients[0].resources.https://user:***@api.example/: unknown resource "https://user:[redacted]@api.example"'],
    ],
  ])('%s', (_label, mutate, env, problems) => {
    const raw = minimal();
    mutate(raw);
    const error = errorOf(raw, env);
    expect(error.problems).toEqual(problems);
    expect(error.message).toBe(problems[0]);
    expectNoMarker(error.message);
  });

  test('every mistake at once, each on its own line with its path, none with a secret', () => {
    const raw = minimal();
    (client(raw, 0).auth as Record<string, unknown>).secrt = 'x';
    client(raw, 0).binding = 'magic';
    (client(raw, 1).auth as Record<string, unknown>).extra = PRIVATE_JWK;
    raw.resources[0] = { ...raw.resources[0]!, uri: 'https://api.example#fragment' };
    const error = errorOf(raw, { ...SECRET_ENV, TETHER_HTTPS_PORT: 'eighty' });
    expect(error.problems).toEqual([
      'tether.config.yaml: listeners.https.port: Invalid input: expected number, received string (got "eighty") (set by TETHER_HTTPS_PORT)',
      'tether.config.yaml: resources[0].uri: expected an absolute URI without a fragment (got "https://api.example#fragment")',
      'tether.config.yaml: clients[0].auth: Unrecognized key: "secrt"',
      'tether.config.yaml: clients[0].binding: Invalid option: expected one of "mtls"|"dpop"|"none" (got "magic")',
      'tether.config.yaml: clients[1].auth: Unrecognized key: "extra"',
    ]);
    expect(error.message).toBe(['tether.config.yaml: 5 problems', ...error.problems.map((problem) => `  ${problem.replace('tether.config.yaml: ', '')}`)].join('\n'));
    expectNoMarker(error.message);
  });

  test('all cross-reference mistakes at once', () => {
    const raw = minimal();
    client(raw, 0).resources = { 'https://unknown.example': ['read'] };
    client(raw, 1).resources = { 'https://api.example': ['write'] };
    const error = errorOf(raw);
    expect(error.problems).toEqual([
      'tether.config.yaml: clients[0].resources.https://unknown.example: unknown resource "https://unknown.example"',
      'tether.config.yaml: clients[1].resources.https://api.example: scope "write" is not declared by resource "https://api.example"',
    ]);
  });
});

describe('files', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tether-config-secrets-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a YAML syntax error on the line of a secret names the line and column, not the line\'s text', async () => {
    const file = path.join(dir, 'broken.yaml');
    await writeFile(file, [
      'issuer: https://auth.example',
      'clients:',
      `  - { id: c1, auth: { method: client_secret_basic, secret: "${FILE_SECRET}`,
      '',
    ].join('\n'));
    const error: unknown = await loadConfigFile(file, {}).catch((caught: unknown) => caught);
    if (!(error instanceof ConfigError)) throw new Error('expected a ConfigError');
    expect(error.problems).toEqual([`${file}: not valid YAML or JSON at line 4, column 1: missing char`]);
    expectNoMarker(error.message);
  });
});


describe('tether start --config bad.yaml (the real command line)', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tether-cli-secrets-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const badYaml = [
    'issuer: https://auth.example',
    'listeners: { https: { port: 8443, certFile: server.pem, keyFile: server.key.pem } }',
    'resources: [{ uri: "https://api.example", scopes: [read] }]',
    'clients:',
    `  - { id: c1, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "${FILE_SECRET}", secrt: x } }`,
    `  - { id: c2, owner: o, purpose: p, binding: magic, auth: { method: private_key_jwt, jwks: { keys: [${JSON.stringify(PRIVATE_JWK)}] }, jwksUrl: x } }`,
    '',
  ].join('\n');

  test('every mistake, one per line, exit code 2, no marker on stderr or stdout', async () => {
    await writeFile(path.join(dir, 'bad.yaml'), badYaml);
    const run = await runTetherToEnd(['start', '--config', 'bad.yaml'], { ...SECRET_ENV, TETHER_HTTP_PORT: 'eighty' }, dir);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toEqual([
      'tether: bad.yaml: 4 problems',
      '  listeners.http.port: Invalid input: expected number, received string (got "eighty") (set by TETHER_HTTP_PORT)',
      '  clients[0].auth: Unrecognized key: "secrt"',
      '  clients[1].auth: Unrecognized key: "jwksUrl"',
      '  clients[1].binding: Invalid option: expected one of "mtls"|"dpop"|"none" (got "magic")',
    ]);
    expectNoMarker(run.stderr + run.stdout);
  });

  test('a YAML syntax error next to a secret', async () => {
    await writeFile(path.join(dir, 'syntax.yaml'), badYaml.replace(`secret: "${FILE_SECRET}"`, `secret: "${FILE_SECRET}`));
    const run = await runTetherToEnd(['start', '--config', 'syntax.yaml'], SECRET_ENV, dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^tether: syntax\.yaml: not valid YAML or JSON at line \d+, column \d+: [a-z ]+\n$/);
    expectNoMarker(run.stderr + run.stdout);
  });

  test('a valid configuration whose database is unreachable: the URL\'s password is not printed', async () => {
    const good = [
      'issuer: https://auth.example',
      `listeners: { http: { port: ${await freePort()} } }`,
      'resources: [{ uri: "https://api.example", scopes: [read] }]',
      `clients: [{ id: c1, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "${FILE_SECRET}" }, resources: { "https://api.example": [read] } }]`,
      '',
    ].join('\n');
    await writeFile(path.join(dir, 'good.yaml'), good);
    const run = await runTetherToEnd(['start', '--config', 'good.yaml'], {
      TETHER_KEY_ENCRYPTION_SECRET: ENV_SECRET,
      DATABASE_URL: `postgres://tether:${URL_PASSWORD}@127.0.0.1:${await freePort()}/tether`,
    }, dir);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/ECONNREFUSED/);
    expectNoMarker(run.stderr + run.stdout);
  });
});

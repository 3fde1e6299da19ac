// `tether probe` end to end against the orders API example: with the configured Tether run
// in-process, and with a running one (`--issuer`). With DATABASE_URL, Tether's data lives in a fresh
// PostgreSQL database; otherwise in an embedded PGlite directory.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { Agent } from 'undici';
import { stringify } from 'yaml';
import { PROBE_EXIT, registerProbeCommand } from '../../src/cli/probe_command.js';
import { openConfiguredDatabase } from '../../src/cli/run_server.js';
import { loadConfigFile } from '../../src/config/load_config.js';
import { ensureDevPki, type DevPki } from '../../src/keys/dev_pki.js';
import { loadSigningKeys } from '../../src/keys/signing_keys.js';
import { startTether, type ProbeReport } from '../../src/testing/index.js';
import { fetchTrusting } from '../../examples/orders_api/issuer_fetch.js';
import { exampleTetherConfig } from '../../examples/orders_api/example_config.js';
import { createOrdersApi, type Authenticate } from '../../examples/orders_api/orders_api.js';
import { listenOrdersApi } from '../../examples/orders_api/server.js';
import { weakenedAuthentication } from '../../examples/orders_api/weakened_copies.js';
import { createEmptyPostgresDatabase } from '../support/database.js';
import { freePort } from '../support/ports.js';

const ORDERS = 'https://orders.example.test';

class Captured extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

let directory: string;
let configFile: string;
let issuer: string;
let port: number;
let pki: DevPki;
let postgres: { url: string; drop(): Promise<void> } | undefined;
const savedDatabaseUrl = process.env.DATABASE_URL;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), 'tether-probe-cli-'));
  if (savedDatabaseUrl) {
    // The CLI reads DATABASE_URL like every command: point it at a database of this test's own.
    postgres = await createEmptyPostgresDatabase(savedDatabaseUrl);
    process.env.DATABASE_URL = postgres.url;
  }
  port = await freePort();
  issuer = `https://localhost:${port}`;
  configFile = join(directory, 'tether.config.yaml');
  writeFileSync(configFile, stringify({ issuer, dataDir: 'data', listeners: { https: { host: '127.0.0.1', port } }, ...exampleTetherConfig() }));
  pki = await ensureDevPki({ directory: join(directory, 'data', 'pki'), clientNames: ['orders-worker', 'orders-api'] });
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  if (savedDatabaseUrl === undefined) delete process.env.DATABASE_URL;
  else process.env.DATABASE_URL = savedDatabaseUrl;
  await postgres?.drop();
  rmSync(directory, { recursive: true, force: true });
});

/** The orders API, trusting the Tether of the configuration file (which need not be running yet). */
async function ordersApi(authenticate?: Authenticate): Promise<string> {
  const issuerFetch = fetchTrusting(pki.ca.certificatePem);
  const own = pki.clients['orders-api']!;
  const introspectionAgent = new Agent({ connect: { ca: pki.ca.certificatePem, cert: own.certificatePem, key: own.privateKeyPem } });
  const app = createOrdersApi({
    issuer, resource: ORDERS, fetch: issuerFetch.fetch, authenticate,
    introspection: { clientId: 'orders-api', fetchOptions: { dispatcher: introspectionAgent } },
  });
  const api = await listenOrdersApi(app, pki.server);
  closers.push(() => api.close(), () => issuerFetch.agent.close(), () => introspectionAgent.close());
  return `${api.origin}/orders`;
}

/** Runs `tether probe …args` in this process; resolves its output and exit code. */
async function tetherProbe(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Captured();
  const err = new Captured();
  const program = new Command('tether').exitOverride();
  registerProbeCommand(program, out, err);
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'tether', 'probe', ...args]);
    return { code: Number(process.exitCode ?? 0), out: out.text, err: err.text };
  } finally {
    process.exitCode = saved;
  }
}

const request = ['--client', 'orders-worker', '--resource', ORDERS, '--scope', 'orders:read'];
const failedIds = (report: ProbeReport) => report.results.filter((result) => result.verdict === 'fail' || result.verdict === 'error').map((result) => result.id);

describe('tether probe with the configured Tether run in-process', () => {
  test('the orders API passes every check: exit 0, table with a summary', async () => {
    const url = await ordersApi();
    const { code, out } = await tetherProbe(url, '--config', configFile, ...request);
    expect(out).toMatch(/^16 passed, 0 failed, 0 skipped$/m);
    expect(out.split('\n')[0]).toBe(`GET ${url}`);
    expect(code).toBe(PROBE_EXIT.passed);
  });

  test('a copy without an audience check: exit 1, --json names the failed checks', async () => {
    const url = await ordersApi(weakenedAuthentication('no-audience-check', { issuer, resource: ORDERS, jwks: await publishedKeys() }));
    const { code, out } = await tetherProbe(url, '--config', configFile, ...request, '--skip', 'revoked', '--json');
    const report = JSON.parse(out) as ProbeReport;
    expect(failedIds(report)).toEqual(['wrong-aud', 'other-resource-aud']);
    expect(report.ok).toBe(false);
    expect(code).toBe(PROBE_EXIT.failed);
  });

  test('a probe that cannot run (no API there) is exit 1 with the checks as errors; a bad option is exit 2', async () => {
    const unreachable = await tetherProbe('https://localhost:1/orders', '--config', configFile, ...request, '--only', 'valid', '--json');
    const report = JSON.parse(unreachable.out) as ProbeReport;
    expect(report.ok).toBe(false);
    expect(report.results[0]).toMatchObject({ id: 'valid', verdict: 'error' });
    expect(unreachable.code).toBe(PROBE_EXIT.failed);
    const bad = await tetherProbe('https://localhost:1/orders', '--config', configFile, ...request, '--timeout', 'soon');
    expect(bad).toMatchObject({ code: PROBE_EXIT.unusable, out: '', err: 'tether probe: --timeout must be a positive number of milliseconds (got soon)\n' });
  });
});

describe('tether probe --issuer (a running Tether)', () => {
  test('tokens and revocation from the running Tether; the checks needing its key run when its database can be read', async () => {
    const url = await ordersApi();
    const config = await loadConfigFile(configFile);
    const database = await openConfiguredDatabase(config);
    const running = await startTether({ config: config as never, database, pki, port });
    closers.push(() => database.close(), () => running.close());

    const certificate = pki.clients['orders-worker']!;
    const { code, out } = await tetherProbe(url, '--issuer', issuer, '--ca', pki.ca.certificatePath, '--cert', certificate.certificatePath,
      '--key', certificate.privateKeyPath, '--config', configFile, ...request, '--json');
    const report = JSON.parse(out) as ProbeReport;
    expect(failedIds(report)).toEqual([]);
    if (config.databaseUrl) {
      expect(report.skipped).toBe(0);
      expect(code).toBe(PROBE_EXIT.passed);
    } else {
      // Checks that could not run make the probe incomplete: never exit 0 (issue 20).
      expect(report.unrun).toBe(report.skipped);
      expect(report.unrun).toBeGreaterThan(0);
      expect(code).toBe(PROBE_EXIT.unusable);
      // The running Tether holds its embedded database: the probe says so and runs the rest.
      expect(report.results.find((result) => result.id === 'expired')).toMatchObject({ verdict: 'skip', note: expect.stringMatching(/is in use by process/) });
      expect(report.results.filter((result) => result.verdict === 'pass').map((result) => result.id)).toEqual(['valid', 'alg-none', 'foreign-key', 'no-certificate', 'revoked']);
    }
  });

  test('without credentials it does not start: exit 2', async () => {
    const { code, err } = await tetherProbe('https://localhost:1/orders', '--issuer', issuer, ...request);
    expect(code).toBe(PROBE_EXIT.unusable);
    expect(err).toMatch(/needs the client's credentials/);
  });
});

/** The signing keys the configured Tether publishes (from its database; the in-process run created them). */
async function publishedKeys() {
  const config = await loadConfigFile(configFile);
  const database = await openConfiguredDatabase(config);
  try {
    return (await loadSigningKeys(database.knex, { algorithm: config.signing.algorithm })).publicJwks as never;
  } finally {
    await database.close();
  }
}

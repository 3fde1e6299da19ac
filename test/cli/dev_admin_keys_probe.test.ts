import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Agent, fetch } from 'undici';
import { stringify } from 'yaml';
import { ensureDevPki } from '../../src/keys/dev_pki.js';
import type { ProbeReport } from '../../src/testing/index.js';
import { exampleTetherConfig } from '../../examples/orders_api/example_config.js';
import { fetchTrusting } from '../../examples/orders_api/issuer_fetch.js';
import { createOrdersApi } from '../../examples/orders_api/orders_api.js';
import { listenOrdersApi } from '../../examples/orders_api/server.js';
import { freePort } from '../support/nginx.js';
import { runTetherProcess, waitFor, type TetherProcess } from '../support/tether_process.js';

// `tether keys` and `tether probe --issuer` next to a running `tether dev` (issue 20): the embedded
// database has one owner, so both go through that server's admin API with the local credential.
// Real processes (tether dev, the CLI), real ports, the orders API example.

const ORDERS = 'https://orders.example.test';

// Every child runs on the embedded database of its working directory, whatever DATABASE_URL the suite has.
function runTether(args: string[], cwd: string): TetherProcess {
  return runTetherProcess(args, { TETHER_LOG_LEVEL: 'warn', DATABASE_URL: undefined }, cwd);
}

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const run = runTether(args, workdir);
  return { code: await run.exited, out: run.stdout(), err: run.stderr() };
}

let workdir: string;
let issuer: string;
let dev: TetherProcess;
let credential: { secret: string; url: string };
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-dev-keys-'));
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  issuer = `https://localhost:${httpsPort}`;
  // The orders API example's Tether, as ./tether.config.yaml: every command below finds it by itself.
  await writeFile(path.join(workdir, 'tether.config.yaml'), stringify({
    issuer, dataDir: '.tether',
    listeners: { https: { host: '127.0.0.1', port: httpsPort }, http: { host: '127.0.0.1', port: httpPort } },
    ...exampleTetherConfig(),
  }));
  dev = runTether(['dev'], workdir);
  await waitFor(() => dev.stdout().includes('curl') || dev.child.exitCode !== null, 'the dev banner');
  expect(dev.child.exitCode).toBeNull();
  credential = JSON.parse(await readFile(path.join(workdir, '.tether', 'admin-credential.json'), 'utf8')) as typeof credential;
}, 120_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  if (dev.child.exitCode === null) {
    dev.child.kill('SIGTERM');
    await dev.exited;
  }
  await rm(workdir, { recursive: true, force: true });
});

/** The orders API example, trusting the running tether dev (its PKI, made by tether dev). */
async function ordersApi(): Promise<string> {
  const pki = await ensureDevPki({ directory: path.join(workdir, '.tether', 'pki'), clientNames: ['orders-worker', 'orders-api'] });
  const issuerFetch = fetchTrusting(pki.ca.certificatePem);
  const own = pki.clients['orders-api']!;
  const introspectionAgent = new Agent({ connect: { ca: pki.ca.certificatePem, cert: own.certificatePem, key: own.privateKeyPem } });
  const app = createOrdersApi({ issuer, resource: ORDERS, fetch: issuerFetch.fetch, introspection: { clientId: 'orders-api', fetchOptions: { dispatcher: introspectionAgent } } });
  const api = await listenOrdersApi(app, pki.server);
  closers.push(() => api.close(), () => issuerFetch.agent.close(), () => introspectionAgent.close());
  return `${api.origin}/orders`;
}

interface LedgerEvent { type: string; actor: string | null; details: Record<string, unknown> | null }

async function adminCalls(): Promise<LedgerEvent[]> {
  const tail = await cli('ledger', 'tail', '-n', '200', '--type', 'admin.called', '--json');
  expect(tail.code).toBe(0);
  return tail.out.trim().split('\n').map((line) => JSON.parse(line) as LedgerEvent);
}

test('tether probe --issuer <running tether dev> runs every check with the key from the admin API: 16 passed, exit 0', async () => {
  const url = await ordersApi();
  const clients = path.join('.tether', 'pki', 'clients');
  const probe = await cli('probe', url, '--issuer', issuer, '--ca', path.join('.tether', 'pki', 'ca.pem'),
    '--cert', path.join(clients, 'orders-worker.pem'), '--key', path.join(clients, 'orders-worker.key.pem'),
    '--config', 'tether.config.yaml', '--client', 'orders-worker', '--resource', ORDERS, '--scope', 'orders:read', '--json');
  const report = JSON.parse(probe.out) as ProbeReport;
  expect(report.results.map((result) => [result.id, result.verdict])).toEqual([
    'valid', 'wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key',
    'unknown-kid', 'foreign-key', 'missing-cnf', 'cnf-other-certificate', 'no-certificate', 'scope-missing', 'revoked',
  ].map((id) => [id, 'pass']));
  expect(report).toMatchObject({ passed: 16, failed: 0, skipped: 0, unrun: 0, ok: true });
  expect(probe).toMatchObject({ code: 0, err: '' });

  const calls = await adminCalls();
  expect(calls.filter((event) => event.details!.operation === 'keys.signing').map((event) => [event.actor, event.details!.status, event.details!.via]))
    .toEqual([[expect.stringMatching(/^admin:dev-credential \(cli:[^@]+@.+\)$/), 200, 'dev-credential']]);
}, 120_000);

test('the signing key is not given without the dev credential: 401', async () => {
  const response = await fetch(`${credential.url}/api/keys/signing`, { headers: { authorization: 'Bearer not-the-credential' } });
  expect(response.status).toBe(401);
  expect(await response.json()).toEqual({ error: 'invalid_token' });
});

test('tether keys list, rotate and retire go through the admin API; refusals exit 1; every call is in the ledger', async () => {
  const listed = await cli('keys', 'list', '--json');
  expect(listed).toMatchObject({ code: 0, err: '' });
  const [first, ...others] = JSON.parse(listed.out) as { kid: string; state: string; current: boolean }[];
  expect(others).toEqual([]);
  expect(first).toMatchObject({ state: 'active', current: true });
  const old = first!.kid;

  const rotated = await cli('keys', 'rotate');
  expect(rotated).toMatchObject({ code: 0, err: '' });
  const match = /^new ES256 signing key (\S+) is published now and signs from (\S+) \(after the publication delay of (\d+) s\)\n(\S+) signs until then, and stays published for (\d+) s more \(the longest token lifetime \+ leeway\)\nrunning instances pick this up within seconds; no restart needed\n$/.exec(rotated.out);
  expect(match).not.toBeNull();
  const [, staged, signsFrom, , replaced, tail] = match!;
  expect(replaced).toBe(old);

  // The key that signs now: refused without --force, exactly as the local command words it.
  const refused = await cli('keys', 'retire', old);
  expect(refused).toEqual({
    code: 1, out: '',
    err: `tether: refusing to retire ${old}: it is the key that signs ES256 tokens now. ${staged} is staged and signs from ${signsFrom}; ${old} retires by itself then. ` +
      'To stop signing with it at once (a compromised key), add --force: a staged key, or a new one, signs immediately, before every verifier may have fetched it.\n',
  });
  const unknown = await cli('keys', 'retire', 'no-such-kid');
  expect(unknown).toEqual({ code: 1, out: '', err: 'tether: no signing key no-such-kid\n' });

  const forced = await cli('keys', 'retire', old, '--force', '--json');
  expect(forced.code).toBe(0);
  expect(JSON.parse(forced.out)).toEqual({
    kid: old, alg: 'ES256', retired: true, already_retired: false, published_until: expect.any(String), was_active: true, promoted: staged,
  });
  const again = await cli('keys', 'retire', old);
  expect(again).toEqual({ code: 0, out: `${old} is already retired\n`, err: '' });

  const after = JSON.parse((await cli('keys', 'list', '--json')).out) as { kid: string; state: string; current: boolean }[];
  expect(after.map((key) => [key.kid, key.state, key.current])).toEqual(expect.arrayContaining([[staged, 'active', true], [old, 'retiring', false]]));
  expect(Number(tail)).toBeGreaterThan(0);

  const keyCalls = (await adminCalls()).filter((event) => String(event.details!.operation).startsWith('keys.') && event.details!.operation !== 'keys.signing');
  expect(keyCalls.map((event) => [event.details!.operation, event.details!.path, event.details!.status, event.details!.input])).toEqual([
    ['keys.list', '/admin/api/keys', 200, { format: 'json' }],
    ['keys.rotate', '/admin/api/keys/rotate', 200, { format: 'text' }],
    ['keys.retire', `/admin/api/keys/${old}/retire`, 400, { format: 'text' }],
    ['keys.retire', '/admin/api/keys/no-such-kid/retire', 404, { format: 'text' }],
    ['keys.retire', `/admin/api/keys/${old}/retire`, 200, { format: 'json', force: 'true' }],
    ['keys.retire', `/admin/api/keys/${old}/retire`, 200, { format: 'text' }],
    ['keys.list', '/admin/api/keys', 200, { format: 'json' }],
  ]);
  for (const event of keyCalls) expect(event.actor).toMatch(/^admin:dev-credential \(cli:[^@]+@.+\)$/);
}, 180_000);

// Which CAs make a client certificate `authorized` for tls_client_auth (issue 12, item 4): only the
// configured client CA, never Node's default roots, NODE_EXTRA_CA_CERTS or the system store.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import { clientCaBundleProblem } from '../../src/binding/client_ca_bundle.js';
import { createEphemeralPki, issueClientCertificate, type Pki } from '../../src/keys/dev_pki.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { postForm } from '../support/tether.js';
import { freePort } from '../support/nginx.js';
import { waitFor } from '../support/tether_process.js';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
const ORDERS = 'https://orders.example.test';

interface RunningProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function runNode(script: string, args: string[], env: Record<string, string | undefined>, cwd: string): RunningProcess {
  const childEnv: Record<string, string | undefined> = { ...process.env, TETHER_LOG_LEVEL: 'warn', ...env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete childEnv[name];
  const child = spawn(process.execPath, ['--import', TSX, script, ...args], { cwd, env: childEnv });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

const runTether = (args: string[], env: Record<string, string | undefined>, cwd: string) => runNode(path.join(ROOT, 'src', 'main.ts'), args, env, cwd);

let workdir: string;
// The CA an attacker can get a certificate from: in NODE_EXTRA_CA_CERTS of the Tether process, as a
// public CA is in Node's default store. Its client certificate carries a registered client's subject.
let extra: Pki;
// The CA the operator configured for tls_client_auth.
let configured: Pki;

beforeAll(async () => {
  [extra, configured] = await Promise.all([
    createEphemeralPki({ clientNames: ['orders-worker'] }),
    createEphemeralPki({ clientNames: ['orders-worker'] }),
  ]);
});

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-ca-'));
  await writeFile(path.join(workdir, 'extra-ca.pem'), extra.ca.certificatePem);
  await writeFile(path.join(workdir, 'server.pem'), configured.server.certificatePem);
  await writeFile(path.join(workdir, 'server.key.pem'), configured.server.privateKeyPem);
  await writeFile(path.join(workdir, 'ca.pem'), configured.ca.certificatePem);
});

afterEach(async () => {
  await rm(workdir, { recursive: true, force: true });
});

describe('the HTTPS listener never lets Node’s default roots authorize a client certificate', () => {
  test('with NODE_EXTRA_CA_CERTS naming the issuing CA: Node’s defaults say authorized; Tether’s listener says not, with no CA, an empty one, or another one', async () => {
    const input = path.join(workdir, 'input.json');
    await writeFile(input, JSON.stringify({
      serverCertPem: configured.server.certificatePem,
      serverKeyPem: configured.server.privateKeyPem,
      clientCertPem: extra.clients['orders-worker']!.certificatePem,
      clientKeyPem: extra.clients['orders-worker']!.privateKeyPem,
      otherCaPem: configured.ca.certificatePem,
    }));
    const run = runNode(path.join(ROOT, 'test', 'http', 'support', 'listener_trust_child.ts'), [input], { NODE_EXTRA_CA_CERTS: path.join(workdir, 'extra-ca.pem') }, workdir);
    expect(await run.exited).toBe(0);
    const results = JSON.parse(run.stdout()) as Record<string, { authorized: boolean; error: string | null }>;
    // The control: the test CA really is trusted by Node's default store in that process.
    expect(results.nodeDefaults).toEqual({ authorized: true, error: null });
    for (const kind of ['tetherWithoutCa', 'tetherWithEmptyCa', 'tetherWithAnotherCa']) {
      expect({ kind, authorized: results[kind]!.authorized }).toEqual({ kind, authorized: false });
      expect(results[kind]!.error).toEqual(expect.any(String));
    }
  });
});

describe('tether start requires an explicit client CA for tls_client_auth', () => {
  const certificateClient = 'clients: [{ id: orders-worker, owner: o, purpose: p, binding: mtls, auth: { method: tls_client_auth, subjectDn: "CN=orders-worker" }, resources: { "https://orders.example.test": [orders:read] } }]';

  async function startWith(httpsListener: string): Promise<RunningProcess> {
    await writeFile(path.join(workdir, 'tether.config.yaml'), [
      'issuer: https://localhost:8443',
      `listeners: { https: ${httpsListener} }`,
      'resources: [{ uri: "https://orders.example.test", scopes: [orders:read] }]',
      certificateClient,
      '',
    ].join('\n'));
    // Configuration is checked before any connection: this database is never contacted.
    return runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: 'postgres://tether@127.0.0.1:1/never' }, workdir);
  }

  test('a tls_client_auth client and no clientCaFile → exit 2, one line naming listeners.https.clientCaFile', async () => {
    const run = await startWith(`{ port: ${await freePort()}, certFile: server.pem, keyFile: server.key.pem }`);
    expect(await run.exited).toBe(2);
    expect(run.stderr().trim().split('\n')).toEqual([
      expect.stringMatching(/^tether: .*tether\.config\.yaml: listeners\.https\.clientCaFile: required by tether start: client "orders-worker" uses tls_client_auth/),
    ]);
    expect(run.stdout()).toBe('');
  });

  test.each([
    ['a private key', () => configured.server.privateKeyPem, /block 1 is a private key block, not a certificate/],
    ['no PEM at all', () => 'not a certificate', /holds no PEM certificate/],
    ['a leaf certificate', () => configured.clients['orders-worker']!.certificatePem, /certificate 1 \(CN=orders-worker\) is not a CA certificate/],
  ])('a clientCaFile holding %s → exit 2 naming the field, nothing of the file echoed', async (_label, contents, message) => {
    await writeFile(path.join(workdir, 'bad-ca.pem'), contents());
    const run = await startWith(`{ port: ${await freePort()}, certFile: server.pem, keyFile: server.key.pem, clientCaFile: bad-ca.pem }`);
    expect(await run.exited).toBe(2);
    const lines = run.stderr().trim().split('\n');
    expect(lines).toEqual([expect.stringMatching(/^tether: listeners\.https\.clientCaFile: .*bad-ca\.pem /)]);
    expect(lines[0]).toMatch(message);
    expect(run.stderr()).not.toContain('PRIVATE KEY');
    expect(run.stderr()).not.toContain(contents().length > 80 ? contents().slice(40, 80) : contents());
  });

  test('a missing clientCaFile → exit 2 naming the field', async () => {
    const run = await startWith(`{ port: ${await freePort()}, certFile: server.pem, keyFile: server.key.pem, clientCaFile: nowhere.pem }`);
    expect(await run.exited).toBe(2);
    expect(run.stderr().trim()).toMatch(/^tether: listeners\.https\.clientCaFile: cannot read .*nowhere\.pem \(ENOENT\)$/);
  });

  test('the bundle check accepts CA certificates only', () => {
    expect(clientCaBundleProblem(configured.ca.certificatePem + extra.ca.certificatePem)).toBeUndefined();
    expect(clientCaBundleProblem(`${configured.ca.certificatePem}${configured.server.privateKeyPem}`)).toBe('block 2 is a private key block, not a certificate');
    expect(clientCaBundleProblem('-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n')).toBe('block 1 is not a valid X.509 certificate');
  });
});

// The attack end to end, in a real process whose NODE_EXTRA_CA_CERTS trusts the attacker's CA:
// `tether start` on PostgreSQL when the run has one, `tether dev` on PGlite otherwise (the TLS listener
// and CA loading are the same code; `tether start` refuses PGlite).
describe('tls_client_auth through a real Tether process: a certificate from a CA in NODE_EXTRA_CA_CERTS is refused', () => {
  const onPostgres = Boolean(process.env.DATABASE_URL);

  interface Started {
    run: RunningProcess;
    port: number;
    /** The ledger, readable while the server runs (PostgreSQL) or after it stopped (PGlite). */
    ledger: () => Promise<Database>;
    cleanup: () => Promise<void>;
  }

  async function startTether(clients: string, clientCaFile: string | undefined): Promise<Started> {
    const port = await freePort();
    const caField = clientCaFile ? `, clientCaFile: ${clientCaFile}` : '';
    const database = onPostgres ? await openTestDatabase() : undefined;
    await writeFile(path.join(workdir, 'tether.config.yaml'), [
      `issuer: https://localhost:${port}`,
      `listeners: { https: { port: ${port}, certFile: server.pem, keyFile: server.key.pem${caField} } }`,
      'resources: [{ uri: "https://orders.example.test", scopes: [orders:read] }]',
      `clients: ${clients}`,
      '',
    ].join('\n'));
    const env = {
      NODE_EXTRA_CA_CERTS: path.join(workdir, 'extra-ca.pem'),
      TETHER_LOG_LEVEL: 'info',
      DATABASE_URL: database?.url,
      // tether start requires key encryption (docs/operations.md#keys-at-rest).
      TETHER_KEY_ENCRYPTION_SECRET: 'client-ca-trust-test-secret-0123456789abcdef',
    };
    const run = runTether([onPostgres ? 'start' : 'dev', '--config', 'tether.config.yaml'], env, workdir);
    await waitFor(() => /tether started|Tether \(development\)/.test(run.stderr() + run.stdout()) || run.child.exitCode !== null, 'tether to listen');
    expect(run.child.exitCode).toBeNull();
    let opened: Database | undefined;
    return {
      run,
      port,
      ledger: async () => {
        if (database) return database;
        await stop(run);
        return (opened ??= await openDatabase({ directory: path.join(workdir, '.tether', 'db') }));
      },
      cleanup: async () => {
        await stop(run);
        await opened?.close();
        await database?.close();
      },
    };
  }

  async function stop(run: RunningProcess): Promise<void> {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  }

  async function tokenRequest(port: number, certificate: { certificatePem: string; privateKeyPem: string }, form: Record<string, string>) {
    const agent = new Agent({ connect: { ca: configured.ca.certificatePem, cert: certificate.certificatePem, key: certificate.privateKeyPem } });
    try {
      return await postForm(`https://localhost:${port}/token`, { grant_type: 'client_credentials', resource: ORDERS, ...form }, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  }

  test('the certificate of the NODE_EXTRA_CA_CERTS CA → 401 invalid_client and a rejection in the ledger; the configured CA’s → a token', async () => {
    const tether = await startTether(
      '[{ id: orders-worker, owner: o, purpose: p, binding: mtls, auth: { method: tls_client_auth, subjectDn: "CN=orders-worker" }, resources: { "https://orders.example.test": [orders:read] } }]',
      'ca.pem',
    );
    try {
      const forged = await tokenRequest(tether.port, extra.clients['orders-worker']!, { client_id: 'orders-worker' });
      expect(forged.status).toBe(401);
      expect(forged.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
      const genuine = await tokenRequest(tether.port, configured.clients['orders-worker']!, { client_id: 'orders-worker' });
      expect(genuine.status).toBe(200);
      expect(decodeJwt(genuine.body.access_token as string).cnf).toEqual({ 'x5t#S256': configured.clients['orders-worker']!.thumbprint });

      const { knex } = await tether.ledger();
      const events = await knex('ledger_events').where({ request_id: forged.headers.get('x-request-id') }).select('type', 'client_id', 'details');
      expect(events).toEqual([expect.objectContaining({
        type: 'request.rejected', client_id: 'orders-worker', details: expect.objectContaining({ route: 'token', status: 401, error: 'invalid_client' }),
      })]);
      const issued = await knex('ledger_events').where({ type: 'token.issued' }).select('request_id');
      expect(issued.map((row: { request_id: string }) => row.request_id)).toEqual([genuine.headers.get('x-request-id')]);
    } finally {
      await tether.cleanup();
    }
  });

  test('without any tls_client_auth client no CA is needed, and self_signed_tls_client_auth still works over the empty trust list', async () => {
    const selfSigned = await issueClientCertificate(configured, 'edge-agent', { selfSigned: true });
    const tether = await startTether(
      `[{ id: edge-agent, owner: o, purpose: p, binding: mtls, auth: { method: self_signed_tls_client_auth, jwks: { keys: [${JSON.stringify(selfSigned.jwk)}] } }, resources: { "https://orders.example.test": [orders:read] } }]`,
      undefined,
    );
    try {
      const answer = await tokenRequest(tether.port, selfSigned, { client_id: 'edge-agent' });
      expect(answer.status).toBe(200);
      expect(decodeJwt(answer.body.access_token as string).cnf).toEqual({ 'x5t#S256': selfSigned.thumbprint });
      // The certificate from the NODE_EXTRA_CA_CERTS CA is not this client's key.
      const other = await tokenRequest(tether.port, extra.clients['orders-worker']!, { client_id: 'edge-agent' });
      expect(other.status).toBe(401);
      expect(other.body.error).toBe('invalid_client');
    } finally {
      await tether.cleanup();
    }
  });
});

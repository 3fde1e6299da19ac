import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { Agent, fetch } from 'undici';
import { createEphemeralPki } from '../../src/keys/dev_pki.js';
import { openTestDatabase } from '../support/database.js';
import { freePort } from '../support/nginx.js';
import { postForm } from '../support/tether.js';
import { runTetherProcess, waitFor } from '../support/tether_process.js';

// `tether dev`, `tether start` and `tether migrate` as a user runs them: a real process, real ports.

/** Quieter than the shared default: these tests read stdout and the exit code, not the log. */
const runTether = (args: string[], env: Record<string, string | undefined>, cwd: string) => runTetherProcess(args, { TETHER_LOG_LEVEL: 'warn', ...env }, cwd);

let workdir: string;

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-cli-'));
});

afterEach(async () => {
  await rm(workdir, { recursive: true, force: true });
});

describe('tether dev', () => {
  test('starts on the embedded database, serves a bound token, stops on SIGTERM, and reuses data and PKI', async () => {
    const port = await freePort();
    // No TETHER_ISSUER: the issuer follows the port (derived from the HTTPS listener).
    const env = { DATABASE_URL: undefined, TETHER_ISSUER: undefined, TETHER_HTTPS_PORT: String(port), TETHER_HTTP_PORT: String(await freePort()) };

    const tokenKid = async () => {
      const pki = path.join(workdir, '.tether', 'pki');
      const agent = new Agent({
        connect: {
          ca: await readFile(path.join(pki, 'ca.pem'), 'utf8'),
          cert: await readFile(path.join(pki, 'clients', 'orders-worker.pem'), 'utf8'),
          key: await readFile(path.join(pki, 'clients', 'orders-worker.key.pem'), 'utf8'),
        },
      });
      // The README's example request.
      const { status, body } = await postForm(`https://localhost:${port}/token`, {
        grant_type: 'client_credentials', client_id: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read',
      }, { dispatcher: agent });
      await agent.close();
      expect(status).toBe(200);
      const certificate = new X509Certificate(await readFile(path.join(pki, 'clients', 'orders-worker.pem')));
      expect(decodeJwt(body.access_token as string)).toMatchObject({
        iss: `https://localhost:${port}`, sub: 'orders-worker', client_id: 'orders-worker', aud: 'https://orders.example.test',
        scope: 'orders:read', cnf: { 'x5t#S256': createHash('sha256').update(certificate.raw).digest('base64url') },
      });
      return decodeProtectedHeader(body.access_token as string).kid;
    };

    const first = runTether(['dev'], env, workdir);
    await waitFor(() => first.stdout().includes('curl'), 'the dev banner');
    expect(first.stdout()).toContain(`issuer https://localhost:${port}`);
    expect(first.stdout()).toContain('--cert .tether/pki/clients/orders-worker.pem');
    const kid = await tokenKid();

    // Discovery on the plain HTTP listener names the issuer's endpoints (RFC 8414 §3.3), and the mTLS listener's aliases (RFC 8705 §5).
    const metadata = await (await fetch(`http://127.0.0.1:${env.TETHER_HTTP_PORT}/.well-known/oauth-authorization-server`)).json() as Record<string, unknown>;
    expect(metadata.issuer).toBe(`https://localhost:${port}`);
    expect(metadata.token_endpoint).toBe(`https://localhost:${port}/token`);
    expect(metadata.mtls_endpoint_aliases).toMatchObject({ token_endpoint: `https://localhost:${port}/token` });

    const ca = await readFile(path.join(workdir, '.tether', 'pki', 'ca.pem'), 'utf8');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = runTether(['dev'], env, workdir);
    await waitFor(() => second.stdout().includes('curl'), 'the second dev banner');
    expect(await tokenKid()).toBe(kid);
    expect(await readFile(path.join(workdir, '.tether', 'pki', 'ca.pem'), 'utf8')).toBe(ca);
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
  });

  test('a bad configuration stops the start with one line naming the field; nothing is started or created', async () => {
    const port = await freePort();
    await writeFile(path.join(workdir, 'tether.config.yaml'), [
      'issuer: https://localhost:8443',
      `listeners: { https: { port: ${port} } }`,
      'resources: [{ uri: "https://api.example", scopes: [read] }]',
      'clients:',
      '  - { id: c1, owner: o, purpose: p, binding: magic, auth: { method: tls_client_auth, subjectDn: "CN=c1" }, resources: { "https://api.example": [read] } }',
      '',
    ].join('\n'));
    const run = runTether(['dev'], { DATABASE_URL: undefined }, workdir);
    expect(await run.exited).toBe(2);
    expect(run.stderr().trim().split('\n')).toEqual([expect.stringMatching(/^tether: .*tether\.config\.yaml: clients\[0\]\.binding: .*\(got "magic"\)$/)]);
    expect(run.stdout()).toBe('');
    expect(existsSync(path.join(workdir, '.tether'))).toBe(false);
    // The port was never bound.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => probe.close(resolve));
  });
});

describe('tether start (production mode)', () => {
  test('refuses to start without PostgreSQL', async () => {
    await writeFile(path.join(workdir, 'tether.config.yaml'), 'issuer: https://a.example\nresources: [{ uri: "https://api.example" }]\nclients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" } }]\n');
    const run = runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: undefined }, workdir);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toMatch(/databaseUrl: tether start needs PostgreSQL/);
  });

  test('a TLS file it cannot read stops the start with one line naming the field and the reason', async () => {
    await writeFile(path.join(workdir, 'tether.config.yaml'), [
      'issuer: https://localhost:8443',
      'listeners: { https: { port: 8443, certFile: tls/server.pem, keyFile: tls/server.key.pem, clientCaFile: tls/ca.pem } }',
      'resources: [{ uri: "https://api.example" }]',
      'clients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" } }]',
      '',
    ].join('\n'));
    // The files are read before the database is opened: this URL is never contacted.
    const run = runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' }, workdir);
    expect(await run.exited).toBe(2);
    expect(run.stderr().trim().split('\n')).toEqual([
      expect.stringMatching(/^tether: listeners\.https\.(certFile|keyFile|clientCaFile): cannot read .*\/tls\/(server|server\.key|ca)\.pem \(ENOENT\)$/),
    ]);
  });

  const onPostgres = process.env.DATABASE_URL ? test : test.skip;
  onPostgres('runs against PostgreSQL with configured certificates and reports ready', async () => {
    const database = await openTestDatabase();
    try {
      const pki = await createEphemeralPki({ clientNames: ['orders-worker'] });
      await writeFile(path.join(workdir, 'server.pem'), pki.server.certificatePem);
      await writeFile(path.join(workdir, 'server.key.pem'), pki.server.privateKeyPem);
      await writeFile(path.join(workdir, 'ca.pem'), pki.ca.certificatePem);
      const port = await freePort();
      const httpPort = await freePort();
      await writeFile(path.join(workdir, 'tether.config.yaml'), [
        `issuer: https://localhost:${port}`,
        `listeners: { https: { port: ${port}, certFile: server.pem, keyFile: server.key.pem, clientCaFile: ca.pem }, http: { port: ${httpPort} } }`,
        'resources: [{ uri: "https://orders.example.test", scopes: [orders:read] }]',
        'clients: [{ id: orders-worker, owner: o, purpose: p, binding: mtls, auth: { method: tls_client_auth, subjectDn: "CN=orders-worker" }, resources: { "https://orders.example.test": [orders:read] } }]',
        '',
      ].join('\n'));
      const run = runTether(['start', '--config', 'tether.config.yaml'], { DATABASE_URL: database.url, TETHER_LOG_LEVEL: 'info', TETHER_KEY_ENCRYPTION_SECRET: 'server-commands-key-encryption-secret-0123' }, workdir);
      await waitFor(() => run.stderr().includes('tether started') || run.child.exitCode !== null, 'tether start');
      const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      expect(ready.status).toBe(200);
      const agent = new Agent({ connect: { ca: pki.ca.certificatePem, cert: pki.clients['orders-worker']!.certificatePem, key: pki.clients['orders-worker']!.privateKeyPem } });
      const { status } = await postForm(`https://localhost:${port}/token`, { grant_type: 'client_credentials', client_id: 'orders-worker', resource: 'https://orders.example.test' }, { dispatcher: agent });
      await agent.close();
      expect(status).toBe(200);
      expect(existsSync(path.join(workdir, '.tether'))).toBe(false);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      await database.close();
    }
  });
});

describe('tether migrate', () => {
  test('applies migrations to the embedded database, then reports it is up to date', async () => {
    const first = runTether(['migrate'], { DATABASE_URL: undefined }, workdir);
    expect(await first.exited).toBe(0);
    expect(first.stdout()).toMatch(/^(applied: .*0001_oidc_payloads.*|already up to date)\n$/);
    const second = runTether(['migrate'], { DATABASE_URL: undefined }, workdir);
    expect(await second.exited).toBe(0);
    expect(second.stdout()).toBe('already up to date\n');
  });
});

/**
 * A legacy API that knows nothing of tokens, behind real nginx whose `auth_request` asks `tether
 * authz` (the forward-auth server, configured from a file) about every request: the nginx
 * configuration is the block of docs/gateways.md, with this test's addresses, ports and files.
 *
 * On loopback the addresses tell the parties apart: nginx reaches the forward-auth server from
 * 127.0.0.1 (its one trusted gateway), clients reach nginx from 127.0.0.3, and a client that goes
 * around nginx reaches the forward-auth server from 127.0.0.3 too (an untrusted peer).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { PROBE_EXIT, registerProbeCommand } from '../../src/cli/probe_command.js';
import { loadAuthzConfig } from '../../src/config/authz_config.js';
import { startAuthz, type RunningAuthz } from '../../src/cli/authz_server.js';
import { createVerifier, nodeVerifier } from '../../src/resource_server/index.js';
import { fetchTrusting } from '../../examples/orders_api/issuer_fetch.js';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { ProbeReport, RunningTether } from '../../src/testing/index.js';
import { freePort, startNginx, type RunningNginx } from '../support/nginx.js';
import { rawRequest, type RawRequest } from '../support/raw_request.js';
import { startTestTether } from '../support/tether.js';
import { harnessConfig, INVOICES, ORDERS } from '../testing/harness_config.js';

const CLIENT_ADDRESS = '127.0.0.3';
const USE_REPORTS = 'https://use-reports.harness.test';

/** The harness world, with Tether's use-report endpoint, which orders-api (the API's own client) reports to. */
function configWithUseReports(): Record<string, unknown> {
  const config = harnessConfig() as { resources: Record<string, unknown>[]; clients: Record<string, unknown>[] };
  return {
    ...config,
    resources: [...config.resources, { uri: USE_REPORTS, scopes: [] }],
    clients: config.clients.map((client) => (client.id === 'orders-api' ? { ...client, resources: { [USE_REPORTS]: [] } } : client)),
    useReports: { resource: USE_REPORTS },
  };
}
const DOC = path.resolve(new URL('../../docs/gateways.md', import.meta.url).pathname);

let tether: RunningTether;
let nginx: RunningNginx;
let authz: RunningAuthz;
let upstream: Server;
let upstreamUrl: string;
let nginxPort: number;
let authzPort: number;
/** https://localhost:<nginx port>: where clients reach the API, the public base URL. */
let publicUrl: string;
let files: string;
let docBlock: string;
const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
/** The upstream's handler: a plain one by default; a test may make the API verify tokens itself. */
let answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"orders":[]}');
};

/** The ```nginx block under "## nginx" in docs/gateways.md. */
async function nginxBlockOfDoc(): Promise<string> {
  const doc = await readFile(DOC, 'utf8');
  const section = doc.slice(doc.indexOf('## nginx'));
  const match = /```nginx\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('docs/gateways.md has no nginx block');
  return match[1]!;
}

/** The documented block with this test's addresses, port and certificate files. */
function withTestAddresses(block: string, directory: string): string {
  const replaced = block
    .replace('server 127.0.0.1:9191;', `server 127.0.0.1:${authzPort};`)
    .replace('server 127.0.0.1:8080;', `server ${new URL(upstreamUrl).host};`)
    .replace('listen 443 ssl;', `listen 127.0.0.1:${nginxPort} ssl;`)
    .replaceAll('/etc/nginx/tls/', `${directory}/`);
  for (const expected of [`127.0.0.1:${authzPort}`, `listen 127.0.0.1:${nginxPort}`, `${directory}/api.example.pem`]) {
    if (!replaced.includes(expected)) throw new Error(`the documented nginx block changed: ${expected} not substituted`);
  }
  return replaced;
}

beforeAll(async () => {
  docBlock = await nginxBlockOfDoc();
  tether = await startTestTether({ config: configWithUseReports() });
  upstream = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    answer(req, res);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  [nginxPort, authzPort] = [await freePort(), await freePort()];
  publicUrl = `https://localhost:${nginxPort}`;

  files = await mkdtemp(path.join(os.tmpdir(), 'tether-authz-'));
  const introspector = tether.pki.clients['orders-api']!;
  await writeFile(path.join(files, 'tether-ca.pem'), tether.pki.ca.certificatePem);
  await writeFile(path.join(files, 'orders-api.pem'), introspector.certificatePem);
  await writeFile(path.join(files, 'orders-api.key.pem'), introspector.privateKeyPem, { mode: 0o600 });
  // JSON is YAML; relative file names resolve against the file's folder.
  await writeFile(path.join(files, 'authz.yaml'), JSON.stringify({
    issuer: tether.issuer, audience: ORDERS, publicBaseUrl: publicUrl, gateway: 'nginx',
    listen: { host: '127.0.0.1', port: authzPort }, trustedGateways: ['127.0.0.1'], clientCertHeader: 'x-ssl-client-cert',
    issuerCaFile: './tether-ca.pem',
    revocation: { introspect: { clientId: 'orders-api', certFile: './orders-api.pem', keyFile: './orders-api.key.pem' } },
    report: { resource: USE_REPORTS, clientId: 'orders-api', certFile: './orders-api.pem', keyFile: './orders-api.key.pem' },
    routes: [
      { method: ['GET', 'HEAD'], path: '/orders', scopes: ['orders:read'] },
      { method: 'POST', path: '/orders', scopes: ['orders:write'] },
    ],
  }));
  authz = await startAuthz(await loadAuthzConfig(path.join(files, 'authz.yaml')));
  nginx = await startNginx({
    files: { 'api.example.pem': tether.pki.server.certificatePem, 'api.example.key.pem': tether.pki.server.privateKeyPem },
    http: (directory) => withTestAddresses(docBlock, directory),
    waitForPorts: [nginxPort],
  });
});

afterAll(async () => {
  await nginx?.stop();
  await authz?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await tether?.close();
  if (files) await rm(files, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
});

const probe = (client: string) => tether.probe({ url: `${publicUrl}/orders?status=open`, client, resource: ORDERS, scope: 'orders:read', otherResource: INVOICES });
const verdicts = (report: ProbeReport) => Object.fromEntries(report.results.map((result) => [result.id, result.verdict]));
const MTLS_CHECKS = ['valid', 'wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key', 'unknown-kid', 'foreign-key', 'missing-cnf', 'cnf-other-certificate', 'no-certificate', 'scope-missing', 'revoked'];
const DPOP_CHECKS = ['valid', 'wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key', 'unknown-kid', 'foreign-key', 'missing-cnf', 'cnf-other-key', 'dpop-as-bearer', 'proof-wrong-htm', 'proof-wrong-htu', 'proof-wrong-ath', 'proof-replayed', 'scope-missing', 'revoked'];
const everyCheck = (ids: string[]) => Object.fromEntries(ids.map((id) => [id, 'pass']));

/** A request to nginx from the client address. */
function throughNginx(request: Partial<RawRequest> & { headers?: Record<string, string | string[]> }) {
  return rawRequest({ connectTo: `https://127.0.0.1:${nginxPort}`, target: '/orders', ca: tether.pki.ca.certificatePem, localAddress: CLIENT_ADDRESS, ...request, headers: { host: `localhost:${nginxPort}`, ...request.headers } });
}

describe('tether probe through nginx', () => {
  test('certificate-bound tokens: every one of the 16 checks passes, none skipped', async () => {
    const report = await probe('worker');
    expect(report.results.map((result) => result.id)).toEqual(MTLS_CHECKS);
    expect(verdicts(report)).toEqual(everyCheck(MTLS_CHECKS));
    expect(report).toMatchObject({ ok: true, failed: 0, skipped: 0, unrun: 0 });
    // Only the control reached the API (and the first use of nothing else).
    expect(seen.map((request) => `${request.method} ${request.url}`)).toEqual(['GET /orders?status=open']);
    expect(seen[0]!.headers).toMatchObject({ 'x-tether-client-id': 'worker', 'x-tether-subject': 'worker', 'x-tether-binding': 'mtls', 'x-tether-scope': 'orders:read' });
  });

  test('DPoP-bound tokens: every one of the 20 checks passes (the proofs name the public URL)', async () => {
    const report = await probe('dpop-worker');
    expect(verdicts(report)).toEqual(everyCheck(DPOP_CHECKS));
    expect(report).toMatchObject({ ok: true, failed: 0, skipped: 0 });
    // The control, and the first use of the proof proof-replayed replays (a good request).
    expect(seen).toHaveLength(2);
    expect(seen.map((request) => request.headers['x-tether-binding'])).toEqual(['dpop', 'dpop']);
  });

  test('refusals carry the challenge (401 by auth_request itself, 403 through error_page) and the marker', async () => {
    const report = await probe('worker');
    expect(report.results.filter((result) => result.id !== 'valid').every((result) => result.refusedByGateway === true && !result.note)).toBe(true);
    expect(report.results.find((result) => result.id === 'scope-missing')).toMatchObject({ answered: '403 insufficient_scope' });
  });

  test('--upstream: every check is enforced by the gateway only (the upstream accepts them all)', async () => {
    const report = await tether.probeThrough({ url: `${publicUrl}/orders`, upstreamUrl: `${upstreamUrl}/orders`, client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', otherResource: INVOICES });
    expect(report.ok).toBe(true);
    expect(report.enforcement).toEqual({ gateway: DPOP_CHECKS.slice(1), api: [], both: [], neither: [], unknown: [] });
    expect(report.results[0]).toMatchObject({ id: 'valid', enforcedBy: 'control' });
  });
});

describe('tether probe --upstream from the command line (a running Tether, the client\'s certificate)', () => {
  class Captured extends Writable {
    text = '';

    override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
      this.text += chunk.toString();
      callback();
    }
  }

  test('the checks it can run are enforced by the gateway; without Tether\'s signing key the rest are unrun (exit 2)', async () => {
    const worker = tether.pki.clients.worker!;
    await writeFile(path.join(files, 'worker.pem'), worker.certificatePem);
    await writeFile(path.join(files, 'worker.key.pem'), worker.privateKeyPem, { mode: 0o600 });
    const program = new Command().exitOverride();
    const out = new Captured();
    const err = new Captured();
    registerProbeCommand(program, out, err);
    // No database named: the checks that need Tether's signature are reported as not run.
    const savedDatabaseUrl = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    process.exitCode = undefined;
    try {
      await program.parseAsync([
        'node', 'tether', 'probe', `${publicUrl}/orders`, '--upstream', `${upstreamUrl}/orders`, '--json',
        '--issuer', tether.issuer, '--ca', path.join(files, 'tether-ca.pem'), '--api-ca', path.join(files, 'tether-ca.pem'),
        '--cert', path.join(files, 'worker.pem'), '--key', path.join(files, 'worker.key.pem'),
        '--client', 'worker', '--resource', ORDERS, '--scope', 'orders:read',
      ]);
      expect(process.exitCode).toBe(PROBE_EXIT.unusable);
    } finally {
      if (savedDatabaseUrl !== undefined) process.env.DATABASE_URL = savedDatabaseUrl;
      process.exitCode = undefined;
    }
    const report = JSON.parse(out.text) as { ok: boolean; upstream_url: string; enforcement: Record<string, string[]> };
    expect(report.upstream_url).toBe(`${upstreamUrl}/orders`);
    expect(report.enforcement).toMatchObject({ gateway: ['alg-none', 'foreign-key', 'no-certificate', 'revoked'], api: [], both: [], neither: [] });
    expect(report.enforcement.unknown).toHaveLength(MTLS_CHECKS.length - 5);
    expect(err.text).toMatch(/could not be run/);
  });
});

describe('an API that verifies tokens itself, behind the same nginx', () => {
  test('--upstream: every check is enforced by both (refused by the gateway, and by the API when reached directly)', async () => {
    const plain = answer;
    const trusting = fetchTrusting(tether.pki.ca.certificatePem);
    const verifier = createVerifier({
      issuer: tether.issuer, audience: ORDERS, fetch: trusting.fetch,
      revocation: { introspect: { clientAuth: { method: 'tls_client_auth', clientId: 'orders-api' }, fetchOptions: { dispatcher: tether.dispatcherFor('orders-api') } } },
    });
    answer = nodeVerifier({ verifier, publicBaseUrl: publicUrl, requiredScopes: ['orders:read'], resourceMetadata: false }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"orders":[]}');
    });
    try {
      const report = await tether.probeThrough({ url: `${publicUrl}/orders`, upstreamUrl: `${upstreamUrl}/orders`, client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', otherResource: INVOICES });
      expect(report.enforcement).toEqual({ gateway: [], api: [], both: DPOP_CHECKS.slice(1), neither: [], unknown: [] });
      expect(report.directReport.ok).toBe(true);
    } finally {
      answer = plain;
      await trusting.agent.close();
    }
  });
});

describe('hostile clients through nginx', () => {
  test('forged identity headers never reach the API: nginx sets them from the forward-auth answer', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await throughNginx({
      certificate: tether.pki.clients.worker!,
      headers: {
        authorization: `Bearer ${token.accessToken}`, 'x-tether-client-id': 'admin', 'X-TETHER-SCOPE': 'orders:write admin', 'x-tether-binding': 'none',
        'x_tether_client_id': 'admin', 'x-original-uri': '/admin', 'x-original-method': 'DELETE',
      },
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    const { headers } = seen[0]!;
    expect(headers).toMatchObject({ 'x-tether-client-id': 'worker', 'x-tether-scope': 'orders:read', 'x-tether-binding': 'mtls', 'x-tether-token-id': token.claims!.jti });
    expect(Object.keys(headers).filter((name) => /tether/i.test(name)).sort()).toEqual(['x-tether-binding', 'x-tether-client-id', 'x-tether-scope', 'x-tether-subject', 'x-tether-token-id']);
    expect(headers['x-ssl-client-cert']).toBeUndefined();
  });

  test('forged identity headers without a token → 401, the API sees nothing', async () => {
    const response = await throughNginx({ headers: { 'x-tether-client-id': 'admin', 'x-tether-scope': 'orders:read' } });
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer realm=.*, DPoP realm=/);
    expect(seen).toEqual([]);
  });

  test('a client-sent X-Original-URI (twice) is replaced by nginx: POST /admin is judged as POST /admin', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await throughNginx({ target: '/admin', method: 'POST', certificate: tether.pki.clients.worker!, headers: { authorization: `Bearer ${token.accessToken}`, 'x-original-uri': ['/orders', '/orders'], 'x-original-method': 'GET' } });
    expect(response.status).toBe(403);
    expect(seen).toEqual([]);
  });

  test('a client-sent X-SSL-Client-Cert is replaced: a certificate-bound token without a TLS certificate → 401', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await throughNginx({ headers: { authorization: `Bearer ${token.accessToken}`, 'x-ssl-client-cert': encodeURIComponent(tether.pki.clients.worker!.certificatePem) } });
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(seen).toEqual([]);
  });

  test.each([
    ['/public/../orders'],
    ['/orders/..%2Forders'],
    ['/x/%2e%2e/orders'],
    ['//orders'],
    ['/orders/.'],
  ])('path trick %s → 400 invalid_request through nginx, the API sees nothing', async (target) => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await throughNginx({ target, certificate: tether.pki.clients.worker!, headers: { authorization: `Bearer ${token.accessToken}` } });
    expect(response.status).toBe(400);
    expect(response.headers['www-authenticate']).toContain('error="invalid_request"');
    expect(seen).toEqual([]);
  });

  test('a DPoP proof for another method, or for the host the client names, → 401 invalid_dpop_proof', async () => {
    const key = await createDpopKey();
    const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', dpopKey: key });
    for (const [htm, htu, host] of [['POST', `${publicUrl}/orders`, `localhost:${nginxPort}`], ['GET', 'https://evil.example/orders', 'evil.example']] as const) {
      const proof = await dpopProof(key, { htm, htu, accessToken: token.accessToken });
      const response = await throughNginx({ headers: { host, authorization: `DPoP ${token.accessToken}`, dpop: proof, 'x-forwarded-host': 'evil.example' } });
      expect(response.status).toBe(401);
      expect(response.headers['www-authenticate']).toMatch(/^DPoP realm="[^"]+", error="invalid_dpop_proof"/);
    }
    expect(seen).toEqual([]);
  });

  test('oversized headers: nginx\'s own limit (400), or the forward-auth server\'s (431), never the API', async () => {
    const huge = await throughNginx({ headers: { authorization: `Bearer ${'a'.repeat(10_000)}` } });
    expect(huge.status).toBe(400);
    const many = await throughNginx({ headers: { 'x-padding-1': 'a'.repeat(7000), 'x-padding-2': 'b'.repeat(7000), 'x-padding-3': 'c'.repeat(4000) } });
    expect(many.status).toBe(431);
    expect(seen).toEqual([]);
  });
});

describe('around nginx: straight to the forward-auth server', () => {
  test('from an untrusted peer, a perfect request → 403, no identity', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await rawRequest({
      connectTo: authz.url, target: '/_tether_authz', localAddress: CLIENT_ADDRESS,
      headers: { host: 'authz', authorization: `Bearer ${token.accessToken}`, 'x-original-method': 'GET', 'x-original-uri': '/orders', 'x-ssl-client-cert': encodeURIComponent(tether.pki.clients.worker!.certificatePem) },
    });
    expect(response.status).toBe(403);
    expect(response.body).toEqual({ error: 'access_denied', error_description: 'this forward-auth endpoint answers its configured gateways only' });
    expect(response.headers['x-tether-client-id']).toBeUndefined();
  });

  test('from the gateway\'s address with X-Original-URI twice, or none → 400', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const base = { host: 'authz', authorization: `Bearer ${token.accessToken}`, 'x-original-method': 'GET', 'x-ssl-client-cert': encodeURIComponent(tether.pki.clients.worker!.certificatePem) };
    const twice = await rawRequest({ connectTo: authz.url, target: '/', headers: { ...base, 'x-original-uri': ['/orders', '/orders'] } });
    expect(twice.status).toBe(400);
    const none = await rawRequest({ connectTo: authz.url, target: '/', headers: base });
    expect(none.status).toBe(400);
    const right = await rawRequest({ connectTo: authz.url, target: '/', headers: { ...base, 'x-original-uri': '/orders' } });
    expect(right.status).toBe(200);
  });
});

describe('without the auth_request line', () => {
  test('the probe reports every check but the control as failed (ACCEPTED); --upstream says neither enforces them', async () => {
    const withoutAuthRequest = docBlock.replace(/^\s*auth_request \/_tether_authz;\n/m, '');
    expect(withoutAuthRequest).not.toBe(docBlock);
    await nginx.reconfigure((directory) => withTestAddresses(withoutAuthRequest, directory));
    try {
      const report = await probe('worker');
      expect(report.ok).toBe(false);
      expect(report.results.filter((result) => result.verdict === 'fail').map((result) => result.id)).toEqual(MTLS_CHECKS.slice(1));
      expect(report.results.slice(1).every((result) => result.note === 'ACCEPTED')).toBe(true);
      const through = await tether.probeThrough({ url: `${publicUrl}/orders`, upstreamUrl: `${upstreamUrl}/orders`, client: 'worker', resource: ORDERS, scope: 'orders:read', otherResource: INVOICES });
      expect(through.enforcement).toEqual({ gateway: [], api: [], both: [], neither: MTLS_CHECKS.slice(1), unknown: [] });
      expect(through.ok).toBe(false);
    } finally {
      await nginx.reconfigure((directory) => withTestAddresses(docBlock, directory));
    }
  });
});

describe('the forward-auth server down', () => {
  test('at its stop it reports what it judged to Tether, as orders-api: accepted and refused presentations by reason', async () => {
    await authz.close();
    const rows = await tether.database.knex('use_events').where({ resource: ORDERS }).select('reporter_client_id', 'outcome', 'reason', 'client_id', 'binding_method', 'token_state');
    expect(new Set(rows.map((row) => row.reporter_client_id))).toEqual(new Set(['orders-api']));
    expect(rows).toEqual(expect.arrayContaining([
      expect.objectContaining({ outcome: 'accepted', client_id: 'worker', binding_method: 'mtls', token_state: 'active' }),
      expect.objectContaining({ outcome: 'accepted', client_id: 'dpop-worker', binding_method: 'dpop' }),
      expect.objectContaining({ outcome: 'refused', reason: 'revoked', token_state: 'revoked' }),
    ]));
    const reasons = new Set(rows.filter((row) => row.outcome === 'refused').map((row) => row.reason));
    for (const reason of ['wrong_audience', 'expired', 'not_yet_valid', 'unknown_issuer', 'bad_signature', 'binding_mismatch', 'bad_proof', 'replayed_proof', 'insufficient_scope', 'revoked', 'malformed', 'no_credentials']) {
      expect([reason, reasons.has(reason)]).toEqual([reason, true]);
    }
  });

  test('nginx fails closed: 503 with Retry-After (unavailable, not refused), the API sees nothing', async () => {
    const token = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const response = await throughNginx({ certificate: tether.pki.clients.worker!, headers: { authorization: `Bearer ${token.accessToken}` } });
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(seen).toEqual([]);
  });
});

/**
 * The same legacy API behind real Caddy (`forward_auth`, the `forwarded` convention:
 * X-Forwarded-Method and X-Forwarded-Uri), configured by the Caddyfile block of docs/gateways.md with
 * this test's addresses and certificate. DPoP-bound tokens (Caddy asks for no client certificate here).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseAuthzConfig } from '../../src/config/authz_config.js';
import { startAuthz, type RunningAuthz } from '../../src/cli/authz_server.js';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/index.js';
import { startCaddy, type RunningCaddy } from '../support/caddy.js';
import { freePort } from '../support/nginx.js';
import { rawRequest, type RawRequest } from '../support/raw_request.js';
import { startTestTether } from '../support/tether.js';
import { harnessConfig, INVOICES, ORDERS } from '../testing/harness_config.js';

const DOC = path.resolve(new URL('../../docs/gateways.md', import.meta.url).pathname);
const CLIENT_ADDRESS = '127.0.0.3';

let tether: RunningTether;
let caddy: RunningCaddy;
let authz: RunningAuthz;
let upstream: Server;
let upstreamUrl: string;
let caddyPort: number;
let publicUrl: string;
let files: string;
const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];

async function caddyBlockOfDoc(): Promise<string> {
  const doc = await readFile(DOC, 'utf8');
  const match = /```caddy\n([\s\S]*?)```/.exec(doc.slice(doc.indexOf('## Caddy')));
  if (!match) throw new Error('docs/gateways.md has no caddy block');
  return match[1]!;
}

beforeAll(async () => {
  const block = await caddyBlockOfDoc();
  tether = await startTestTether({ config: harnessConfig() });
  upstream = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"orders":[]}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const [authzPort, httpPort] = [await freePort(), await freePort()];
  caddyPort = await freePort();
  publicUrl = `https://localhost:${caddyPort}`;
  files = await mkdtemp(path.join(os.tmpdir(), 'tether-authz-caddy-'));
  const introspector = tether.pki.clients['orders-api']!;
  await writeFile(path.join(files, 'tether-ca.pem'), tether.pki.ca.certificatePem);
  await writeFile(path.join(files, 'orders-api.pem'), introspector.certificatePem);
  await writeFile(path.join(files, 'orders-api.key.pem'), introspector.privateKeyPem, { mode: 0o600 });
  authz = await startAuthz(parseAuthzConfig({
    issuer: tether.issuer, audience: ORDERS, publicBaseUrl: publicUrl, gateway: 'forwarded',
    listen: { host: '127.0.0.1', port: authzPort }, trustedGateways: ['127.0.0.1'],
    issuerCaFile: path.join(files, 'tether-ca.pem'),
    revocation: { introspect: { clientId: 'orders-api', certFile: path.join(files, 'orders-api.pem'), keyFile: path.join(files, 'orders-api.key.pem') } },
    routes: [{ method: ['GET', 'HEAD'], path: '/orders', scopes: ['orders:read'] }, { method: 'POST', path: '/orders', scopes: ['orders:write'] }],
  }));
  caddy = await startCaddy({
    httpPort,
    files: { 'api.example.pem': tether.pki.server.certificatePem, 'api.example.key.pem': tether.pki.server.privateKeyPem },
    sites: (directory) => {
      const site = block
        .replace('api.example {', `https://localhost:${caddyPort} {\n\ttls ${directory}/api.example.pem ${directory}/api.example.key.pem`)
        .replace('forward_auth 127.0.0.1:9191 {', `forward_auth 127.0.0.1:${authzPort} {`)
        .replace('reverse_proxy 127.0.0.1:8080', `reverse_proxy ${new URL(upstreamUrl).host}`);
      if (site === block || !site.includes(`127.0.0.1:${authzPort}`)) throw new Error('the documented caddy block changed');
      return site;
    },
    waitForPorts: [caddyPort],
  });
});

afterAll(async () => {
  await caddy?.stop();
  await authz?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await tether?.close();
  if (files) await rm(files, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
});

function throughCaddy(request: Partial<RawRequest> & { headers?: Record<string, string | string[]> }) {
  return rawRequest({ connectTo: `https://127.0.0.1:${caddyPort}`, target: '/orders', ca: tether.pki.ca.certificatePem, localAddress: CLIENT_ADDRESS, ...request, headers: { host: `localhost:${caddyPort}`, ...request.headers } });
}

const DPOP_CHECKS = ['valid', 'wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key', 'unknown-kid', 'foreign-key', 'missing-cnf', 'cnf-other-key', 'dpop-as-bearer', 'proof-wrong-htm', 'proof-wrong-htu', 'proof-wrong-ath', 'proof-replayed', 'scope-missing', 'revoked'];

test('tether probe through Caddy: every one of the 20 DPoP checks passes; --upstream: all enforced by the gateway', async () => {
  const report = await tether.probeThrough({ url: `${publicUrl}/orders?status=open`, upstreamUrl: `${upstreamUrl}/orders?status=open`, client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', otherResource: INVOICES });
  expect(Object.fromEntries(report.gatewayReport.results.map((result) => [result.id, result.verdict]))).toEqual(Object.fromEntries(DPOP_CHECKS.map((id) => [id, 'pass'])));
  expect(report.ok).toBe(true);
  expect(report.enforcement).toEqual({ gateway: DPOP_CHECKS.slice(1), api: [], both: [], neither: [], unknown: [] });
  // Caddy passes the forward-auth answer on, marker included.
  expect(report.gatewayReport.results.slice(1).every((result) => result.refusedByGateway === true)).toBe(true);
});

test('forged identity headers are removed; the upstream gets the token\'s identity', async () => {
  const key = await createDpopKey();
  const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', dpopKey: key });
  const response = await throughCaddy({
    headers: {
      authorization: `DPoP ${token.accessToken}`, dpop: await dpopProof(key, { htm: 'GET', htu: `${publicUrl}/orders`, accessToken: token.accessToken }),
      'x-tether-client-id': 'admin', 'x-tether-scope': 'admin', 'x-tether-actor': 'admin',
    },
  });
  expect(response.status).toBe(200);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.headers).toMatchObject({ 'x-tether-client-id': 'dpop-worker', 'x-tether-scope': 'orders:read', 'x-tether-binding': 'dpop' });
  expect(seen[0]!.headers['x-tether-actor']).toBeUndefined();
});

test('a client-sent X-Forwarded-Uri / X-Forwarded-Method is replaced by Caddy: POST /admin is judged as such → 403', async () => {
  const key = await createDpopKey();
  const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', dpopKey: key });
  const response = await throughCaddy({
    target: '/admin', method: 'POST',
    headers: { authorization: `DPoP ${token.accessToken}`, dpop: await dpopProof(key, { htm: 'GET', htu: `${publicUrl}/orders`, accessToken: token.accessToken }), 'x-forwarded-uri': '/orders', 'x-forwarded-method': 'GET' },
  });
  expect(response.status).toBe(403);
  expect(seen).toEqual([]);
});

test.each([['/public/../orders'], ['/x/%2e%2e/orders'], ['//orders']])('path trick %s → refused, the upstream sees nothing', async (target) => {
  const key = await createDpopKey();
  const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', dpopKey: key });
  const response = await throughCaddy({ target, headers: { authorization: `DPoP ${token.accessToken}`, dpop: await dpopProof(key, { htm: 'GET', htu: `${publicUrl}/orders`, accessToken: token.accessToken }) } });
  expect(response.status).toBe(400);
  expect(seen).toEqual([]);
});

test('a DPoP proof for the host the client names → 401 invalid_dpop_proof', async () => {
  const key = await createDpopKey();
  const token = await tether.token({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read', dpopKey: key });
  const response = await throughCaddy({ headers: { 'x-forwarded-host': 'evil.example', authorization: `DPoP ${token.accessToken}`, dpop: await dpopProof(key, { htm: 'GET', htu: 'https://evil.example/orders', accessToken: token.accessToken }) } });
  expect(response.status).toBe(401);
  expect(response.headers['www-authenticate']).toMatch(/^DPoP realm="[^"]+", error="invalid_dpop_proof"/);
  expect(seen).toEqual([]);
});

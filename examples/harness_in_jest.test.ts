// The example of docs/testing.md (the document shows it with package imports), run by `npm test`.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { koaVerifier } from '../src/resource_server/index.js';
import { formatProbeTable, startTether, type RunningTether } from '../src/testing/index.js';

// The default configuration is Tether's development one: this API, and clients orders-worker
// (certificate-bound tokens) and reporting-cli (DPoP-bound tokens) that may read it.
const ORDERS = 'https://orders.example.test';

let tether: RunningTether;
let api: https.Server;
let url: string;

beforeAll(async () => {
  tether = await startTether();

  // The API under test: koa with Tether's verifier, served over HTTPS that asks for client certificates.
  const app = new Koa();
  app.use(koaVerifier({ issuer: tether.issuer, audience: ORDERS, jwks: tether.jwks, requiredScopes: ['orders:read'] }));
  app.use((ctx) => {
    ctx.body = { orders: [] };
  });
  const { certificatePem, privateKeyPem } = tether.pki.server;
  api = https.createServer({ cert: certificatePem, key: privateKeyPem, requestCert: true, rejectUnauthorized: false }, app.callback());
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  url = `https://localhost:${(api.address() as AddressInfo).port}/orders`;
});

afterAll(async () => {
  api.closeAllConnections();
  api.close();
  await tether.close();
});

test('a certificate-bound token reads orders', async () => {
  const token = await tether.token({ client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
  const response = await tether.fetchWith(token)(url);
  expect(response.status).toBe(200);
});

test('a DPoP-bound token too: each request carries a fresh proof', async () => {
  const token = await tether.token({ client: 'reporting-cli', resource: ORDERS, scope: 'orders:read' });
  const fetchOrders = tether.fetchWith(token);
  expect((await fetchOrders(url)).status).toBe(200);
  expect((await fetchOrders(url)).status).toBe(200);
});

test.each(['orders-worker', 'reporting-cli'])('%s: tokens wrong in one way are refused', async (client) => {
  // This API does not check revocation (no introspection), so that check is left out.
  const report = await tether.probe({ url, client, resource: ORDERS, scope: 'orders:read', skip: ['revoked'] });
  expect(report.ok ? '' : formatProbeTable(report)).toBe('');
});

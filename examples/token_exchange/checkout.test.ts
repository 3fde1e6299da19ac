// The checkout service (docs/client.md) against a real Tether and two real APIs: the storefront's
// token reaches the checkout service only; the orders API gets the service's own token, the
// payments API one exchanged for the storefront's, each for exactly that API.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { createTokenClient, type TokenClient } from '../../packages/client/src/index.js';
import type { RunningTether } from '../../src/testing/index.js';
import { startTestTether } from '../../test/support/tether.js';
import { startRecordingApi, type RecordingApi } from '../../test/client/support/recording_api.js';
import { fetchTrusting } from '../orders_api/issuer_fetch.js';
import { CHECKOUT, createCheckoutService, ORDERS, PAYMENTS } from './checkout_service.js';

let tether: RunningTether;
let orders: RecordingApi;
let payments: RecordingApi;
let checkoutUrl: string;
const closers: (() => Promise<unknown>)[] = [];

function exampleConfig(): Record<string, unknown> {
  const { resources, clients } = parseYaml(readFileSync(new URL('./tether.config.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  return { resources, clients };
}

beforeAll(async () => {
  // PGlite, or PostgreSQL when DATABASE_URL is set.
  tether = await startTestTether({ config: exampleConfig() });
  const api = (audience: string) => startRecordingApi({ issuer: tether.issuer, audience, jwks: tether.jwks, tls: tether.pki.server, issuerCa: tether.pki.ca.certificatePem });
  [orders, payments] = await Promise.all([api(ORDERS), api(PAYMENTS)]);
  closers.push(() => orders.close(), () => payments.close());

  const own = tether.pki.clients.checkout!;
  const issuerFetch = fetchTrusting(tether.pki.ca.certificatePem);
  const checkout = createCheckoutService({
    issuer: tether.issuer,
    tls: { cert: own.certificatePem, key: own.privateKeyPem, ca: tether.pki.ca.certificatePem },
    ordersUrl: orders.origin,
    paymentsUrl: payments.origin,
    issuerFetch: issuerFetch.fetch,
  });
  const server = https.createServer({ cert: tether.pki.server.certificatePem, key: tether.pki.server.privateKeyPem, requestCert: true, rejectUnauthorized: false }, checkout.app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  checkoutUrl = `https://localhost:${(server.address() as AddressInfo).port}`;
  closers.push(() => checkout.close(), () => issuerFetch.agent.close(), () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await tether?.close();
});

/** The storefront, calling the checkout service with tether-oauth-client. */
function storefront(): TokenClient {
  const certificate = tether.pki.clients.storefront!;
  const client = createTokenClient({
    issuer: tether.issuer, clientId: 'storefront', auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
    tls: { cert: certificate.certificatePem, key: certificate.privateKeyPem, ca: tether.pki.ca.certificatePem },
  });
  closers.push(() => client.close());
  return client;
}

const issued = async (clientId: string) => Number((await tether.database.knex('issued_tokens').where({ client_id: clientId }).count<{ count: string }[]>('* as count'))[0]!.count);

test('one checkout: each API receives a token for itself only, and never the storefront\'s', async () => {
  const shop = storefront();
  const placeOrder = shop.fetchFor({ resource: CHECKOUT, scopes: ['checkout:place', 'payments:charge'], baseUrl: checkoutUrl });
  const answer = await placeOrder(`${checkoutUrl}/checkout?item=tea`, { method: 'POST' });
  expect(answer.status).toBe(201);
  expect(await answer.json()).toEqual({ order: 200, charge: 200 });

  const received = await shop.getToken({ resource: CHECKOUT, scopes: ['payments:charge', 'checkout:place'] });
  const checkoutCertificate = tether.pki.clients.checkout!.thumbprint;
  expect(orders.received).toHaveLength(1);
  expect(orders.received[0]!.claims).toMatchObject({ aud: ORDERS, client_id: 'checkout', sub: 'checkout', scope: 'orders:write', cnf: { 'x5t#S256': checkoutCertificate } });
  expect(orders.received[0]!.claims).not.toHaveProperty('act');
  expect(payments.received).toHaveLength(1);
  expect(payments.received[0]!.claims).toMatchObject({
    aud: PAYMENTS, client_id: 'checkout', sub: 'storefront', act: { sub: 'checkout' }, scope: 'payments:charge', cnf: { 'x5t#S256': checkoutCertificate },
  });
  expect([...orders.received, ...payments.received].some((request) => request.token === received.value)).toBe(false);
});

test('further checkouts reuse the cached tokens; another storefront token gets its own exchange', async () => {
  const shop = storefront();
  const placeOrder = shop.fetchFor({ resource: CHECKOUT, scopes: ['checkout:place', 'payments:charge'] });
  expect((await placeOrder(`${checkoutUrl}/checkout?item=coffee`, { method: 'POST' })).status).toBe(201);
  const before = { checkout: await issued('checkout'), storefront: await issued('storefront') };
  for (let i = 0; i < 3; i += 1) expect((await placeOrder(`${checkoutUrl}/checkout?item=cake`, { method: 'POST' })).status).toBe(201);
  expect({ checkout: await issued('checkout'), storefront: await issued('storefront') }).toEqual(before);

  const otherShop = storefront();
  const otherOrder = otherShop.fetchFor({ resource: CHECKOUT, scopes: ['checkout:place', 'payments:charge'] });
  expect((await otherOrder(`${checkoutUrl}/checkout?item=tea`, { method: 'POST' })).status).toBe(201);
  // One exchange for the new storefront token; the orders token is still the cached one.
  expect(await issued('checkout')).toBe(before.checkout + 1);
  expect(new Set(orders.received.map((request) => request.token)).size).toBe(1);
});

test('a storefront token without payments:charge cannot be exchanged for a charge: no charge is attempted', async () => {
  const shop = storefront();
  const seen = payments.received.length;
  const answer = await shop.fetchFor({ resource: CHECKOUT, scopes: ['checkout:place'] })(`${checkoutUrl}/checkout?item=tea`, { method: 'POST' });
  expect(answer.status).toBe(502);
  expect(await answer.json()).toEqual({ error: 'ERR_TOKEN_ENDPOINT_REFUSED' });
  expect(payments.received.length).toBe(seen);
});

import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { fetch as undiciFetch, type Agent } from 'undici';
import {
  createUseReporter, createVerifier, nodeVerifier, type FetchLike, type UseReporter, type UseReporterOptions, type Verifier, type VerifierOptions,
} from '../../src/resource_server/index.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import type { IssuedAccessToken } from '../../src/testing/token_client.js';
import { dpopProof } from '../../src/testing/dpop.js';
import { htuOf } from '../../src/testing/token_fetch.js';
import { ORDERS, PAYMENTS, testConfig } from '../support/config.js';

// A Tether that takes use reports, and an orders API whose verifier reports to it.

export const USE_REPORTS = 'https://use-reports.test.example';
export const ORDERS_API_DPOP_SECRET = 'orders-api-dpop-secret-0123456789ab';
export const BEARER_REPORTER_SECRET = 'bearer-reporter-secret-0123456789a';

/** testConfig plus: the use-report resource; orders-api (mtls) and orders-api-dpop serve ORDERS; stranger-api serves nothing. */
export function useReportsConfig(): Record<string, unknown> {
  const base = testConfig({
    clients: [
      {
        id: 'orders-api', owner: 'team-orders', purpose: 'the orders API (introspects, reports use)', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=orders-api' }, resources: { [USE_REPORTS]: [] },
      },
      {
        id: 'orders-api-dpop', owner: 'team-orders', purpose: 'the orders API, DPoP-bound reports', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: ORDERS_API_DPOP_SECRET }, resources: { [USE_REPORTS]: [] },
      },
      {
        id: 'stranger-api', owner: 'team-x', purpose: 'serves nothing', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=stranger-api' }, resources: { [USE_REPORTS]: [] },
      },
      {
        id: 'bearer-reporter', owner: 'team-x', purpose: 'unbound tokens', binding: 'none',
        auth: { method: 'client_secret_post', secret: BEARER_REPORTER_SECRET }, resources: { [USE_REPORTS]: [] },
      },
    ],
  }) as { resources: Record<string, unknown>[]; clients: Record<string, unknown>[] };
  // The bearer reporter also "serves" ORDERS: its refusal must come from the binding, not the resource check.
  const resources = base.resources.map((resource) => (resource.uri === ORDERS
    ? { ...resource, introspectors: ['orders-api'], servedBy: ['orders-api-dpop', 'bearer-reporter'] }
    : resource));
  // The use-report resource allows bearer tokens only so that bearer-reporter gets one to be refused with.
  return { ...base, resources: [...resources, { uri: USE_REPORTS, lifetime: '5m', allowBearer: true }], useReports: { resource: USE_REPORTS } };
}

export const useReportEndpointOf = (tether: RunningTether) => `${tether.issuer}/use-reports`;

/** undici's fetch over `dispatcher`, as the package's FetchLike. */
export function fetchOver(dispatcher: Agent): FetchLike {
  return ((input: string, init?: object) => undiciFetch(input, { ...init, dispatcher })) as unknown as FetchLike;
}

/** The headers of a report request made with `token` (a fresh DPoP proof for a DPoP-bound one). */
export function authorizeWith(token: IssuedAccessToken): UseReporterOptions['authorize'] {
  return async ({ method, url }): Promise<Record<string, string>> => {
    if (token.tokenType !== 'DPoP') return { authorization: `Bearer ${token.accessToken}` };
    const proof = await dpopProof(token.credentials.dpopKey!, { htm: method, htu: htuOf(url), accessToken: token.accessToken });
    return { authorization: `DPoP ${token.accessToken}`, dpop: proof };
  };
}

/** A reporter for ORDERS as orders-api (certificate-bound token, certificate on the connection). */
export async function ordersReporter(tether: RunningTether, options: Partial<UseReporterOptions> = {}): Promise<UseReporter> {
  const token = await tether.token({ client: 'orders-api', resource: USE_REPORTS });
  return createUseReporter({
    endpoint: useReportEndpointOf(tether),
    resource: ORDERS,
    authorize: authorizeWith(token),
    fetch: fetchOver(tether.dispatcherFor('orders-api')),
    flushIntervalMs: 3_600_000,
    ...options,
  });
}

export interface RunningApi {
  url: string;
  verifier: Verifier;
  close(): Promise<void>;
}

/** The orders API: GET /orders needs orders:read; the verifier introspects as orders-api and reports to `reporter`. */
export async function startOrdersApi(tether: RunningTether, reporter: UseReporter | undefined, overrides: Partial<VerifierOptions> = {}): Promise<RunningApi> {
  const verifier = createVerifier({
    issuer: tether.issuer,
    audience: ORDERS,
    jwks: tether.jwks as never,
    fetch: fetchOver(tether.dispatcherFor('orders-api')),
    revocation: { introspect: { endpoint: tether.introspectionEndpoint, clientAuth: { method: 'tls_client_auth', clientId: 'orders-api' } } },
    ...(reporter ? { useReporter: reporter } : {}),
    ...overrides,
  });
  const handler = nodeVerifier({ verifier, requiredScopes: ['orders:read'], resourceMetadata: false }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"orders":[]}');
  });
  const server = https.createServer({
    cert: tether.pki.server.certificatePem, key: tether.pki.server.privateKeyPem, requestCert: true, rejectUnauthorized: false,
  }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://localhost:${port}/orders`,
    verifier,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

export { ORDERS, PAYMENTS };

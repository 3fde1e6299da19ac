import { createHash, X509Certificate } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { fetch } from 'undici';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { LEGACY, ORDERS, PAYMENTS, testConfig } from '../support/config.js';
import { postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { startCorporateIdp, type CorporateIdp } from './support/corporate_idp.js';
import { startKubernetesIssuer, type KubernetesIssuer } from './support/kubernetes_issuer.js';

/**
 * Federated subject tokens in token exchange (RFC 8693), against issuers not written for Tether: a
 * stock oidc-provider as the corporate IdP (its client_credentials JWT access tokens), and a
 * Kubernetes-shaped service-account issuer over TLS. End to end: a workload holding only its
 * service-account token gets a DPoP-bound Tether token and exchanges it onward.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const WORKER_SUB = 'system:serviceaccount:payments:worker';
/** An API that takes the same scope names as ORDERS, so an orders token can be exchanged onward to it. */
const ORDER_HISTORY = 'https://order-history.test.example';
const LEGACY_GATEWAY_SECRET = 'legacy-gateway-secret-0123456789abcdef';

let idp: CorporateIdp;
let cluster: KubernetesIssuer;
let tether: RunningTether;
let dpopKey: DpopKey;

beforeAll(async () => {
  [idp, cluster] = await Promise.all([startCorporateIdp(), startKubernetesIssuer()]);
  const base = testConfig({
    clients: [
      {
        id: 'reports-gateway', owner: 'team-reports', purpose: 'serves corporate batch jobs', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=reports-gateway' },
        exchange: { targets: { [ORDERS]: ['orders:read', 'orders:write'], [PAYMENTS]: ['payments:read'] } },
      },
      {
        id: 'bystander', owner: 'team-x', purpose: 'tests', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=bystander' },
        exchange: { targets: { [ORDERS]: ['orders:read'] } },
      },
      {
        id: 'legacy-gateway', owner: 'team-legacy', purpose: 'bearer tokens for the legacy API', binding: 'none',
        auth: { method: 'client_secret_post', secret: LEGACY_GATEWAY_SECRET },
        exchange: { targets: { [LEGACY]: ['legacy:read'] } },
      },
      {
        id: 'payments-worker', owner: 'team-payments', purpose: 'charges cards', binding: 'dpop',
        auth: { method: 'federated' },
        federatedIdentities: [{ issuer: cluster.issuer, subject: WORKER_SUB }],
        exchange: { targets: { [ORDERS]: ['orders:read'], [PAYMENTS]: ['payments:read'], [ORDER_HISTORY]: ['orders:read'] } },
      },
    ],
  });
  tether = await startTestTether({
    config: {
      ...base,
      resources: [...(base.resources as object[]), { uri: ORDER_HISTORY, scopes: ['orders:read'] }],
      federation: {
        issuers: [
          {
            issuer: idp.issuer, algorithms: ['ES256'],
            subjectTokens: [{ subject: 'corp-batch', principal: 'corp:{sub}', clients: ['reports-gateway'], targets: { [ORDERS]: ['orders:read'] } }],
          },
          {
            issuer: cluster.issuer, caFile: cluster.caFile, algorithms: ['RS256'], keyRefetchCooldown: 1,
            subjectTokens: [
              {
                subject: WORKER_SUB, claims: { 'kubernetes.io': { namespace: 'payments' } }, principal: 'payments-worker', clients: ['payments-worker'],
                targets: { [ORDERS]: ['orders:read'], [PAYMENTS]: ['payments:read'] },
              },
              { subject: 'system:serviceaccount:legacy:job', principal: 'legacy-job', clients: ['legacy-gateway'], targets: { [LEGACY]: ['legacy:read'] } },
            ],
          },
        ],
      },
    },
  });
  dpopKey = await createDpopKey();
});

afterAll(async () => {
  await tether?.close();
  await Promise.all([idp?.stop(), cluster?.close()]);
});

function exchangeByCertificate(clientId: string, form: Record<string, string>): Promise<TokenResponse> {
  return postForm(tether.tokenEndpoint, { grant_type: TOKEN_EXCHANGE, client_id: clientId, ...form }, { dispatcher: tether.dispatcherFor(clientId) });
}

/** The workload: authenticates with a fresh service-account token, DPoP proof on every request. */
async function exchangeAsWorkload(form: Record<string, string>): Promise<TokenResponse> {
  const assertion = await cluster.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: tether.issuer });
  return postForm(tether.tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE, client_id: 'payments-worker', client_assertion_type: JWT_BEARER, client_assertion: assertion, ...form,
  }, { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
}

const workerToken = (overrides: Partial<Parameters<KubernetesIssuer['serviceAccountToken']>[0]> = {}) =>
  cluster.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: tether.issuer, ...overrides });

async function verified(token: string, audience: string): Promise<JWTPayload> {
  const jwks = await (await fetch(tether.jwksUri, { dispatcher: tether.dispatcherFor() })).json() as { keys: never[] };
  return (await jwtVerify(token, createLocalJWKSet(jwks), { issuer: tether.issuer, audience, typ: 'at+jwt' })).payload;
}

function thumbprintOf(clientId: string): string {
  return createHash('sha256').update(new X509Certificate(tether.pki.clients[clientId]!.certificatePem).raw).digest('base64url');
}

async function lastRejection(clientId: string): Promise<Record<string, unknown>> {
  await tether.app.unauthenticatedRejections.flush();
  const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: clientId }).orderBy('id', 'desc').first();
  return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
}

async function expectRefusal(response: TokenResponse, status: number, error: string, clientId: string, reason: RegExp): Promise<void> {
  expect({ status: response.status, error: response.body.error }).toEqual({ status, error });
  expect(response.body.access_token).toBeUndefined();
  expect(await lastRejection(clientId)).toMatchObject({ status, error, reason: expect.stringMatching(reason) });
}

describe('the corporate IdP\'s access token (a stock oidc-provider)', () => {
  test('is exchanged for a certificate-bound Tether token naming the external subject, recorded in the ledger', async () => {
    const corporate = await idp.accessToken('corp-batch', tether.issuer);
    const response = await exchangeByCertificate('reports-gateway', { subject_token: corporate, subject_token_type: ACCESS_TOKEN, resource: ORDERS });
    expect({ status: response.status, issued: response.body.issued_token_type, type: response.body.token_type, scope: response.body.scope })
      .toEqual({ status: 200, issued: ACCESS_TOKEN, type: 'Bearer', scope: 'orders:read' });
    const claims = await verified(response.body.access_token as string, ORDERS);
    expect({ sub: claims.sub, act: claims.act, external: claims.external_subject, cnf: claims.cnf, client: claims.client_id }).toEqual({
      sub: 'corp:corp-batch', act: { sub: 'reports-gateway' }, external: { iss: idp.issuer, sub: 'corp-batch' },
      cnf: { 'x5t#S256': thumbprintOf('reports-gateway') }, client: 'reports-gateway',
    });
    expect(claims.exp!).toBeLessThanOrEqual(decodeJwt(corporate).exp!);
    const row = await tether.database.knex('issued_tokens').where({ token_id: claims.jti }).first();
    expect({ subject: row.subject, parent: row.parent_token_id, issuer: row.external_issuer, externalSubject: row.external_subject }).toEqual({
      subject: 'corp:corp-batch', parent: null, issuer: idp.issuer, externalSubject: 'corp-batch',
    });
    const event = await tether.database.knex('ledger_events').where({ token_id: claims.jti }).first();
    expect({ type: event.type, actor: event.actor }).toEqual({ type: 'token.exchanged', actor: 'reports-gateway' });
  });

  test('declared as a JWT it is exchanged the same way', async () => {
    const corporate = await idp.accessToken('corp-batch', tether.issuer);
    const response = await exchangeByCertificate('reports-gateway', { subject_token: corporate, subject_token_type: JWT, resource: ORDERS });
    expect(response.status).toBe(200);
  });

  test('a subject no rule maps: invalid_grant', async () => {
    const other = await idp.accessToken('corp-other', tether.issuer);
    await expectRefusal(await exchangeByCertificate('reports-gateway', { subject_token: other, subject_token_type: ACCESS_TOKEN, resource: ORDERS }),
      400, 'invalid_grant', 'reports-gateway', /no subjectTokens rule of .* matches subject "corp-other"/);
  });

  test('a client the rule does not list: invalid_grant', async () => {
    const corporate = await idp.accessToken('corp-batch', tether.issuer);
    await expectRefusal(await exchangeByCertificate('bystander', { subject_token: corporate, subject_token_type: ACCESS_TOKEN, resource: ORDERS }),
      400, 'invalid_grant', 'bystander', /client bystander may not present tokens of/);
  });

  test('a target or a scope the rule does not give: invalid_target, invalid_scope', async () => {
    const corporate = await idp.accessToken('corp-batch', tether.issuer);
    await expectRefusal(await exchangeByCertificate('reports-gateway', { subject_token: corporate, subject_token_type: ACCESS_TOKEN, resource: PAYMENTS }),
      400, 'invalid_target', 'reports-gateway', /no target "https:\/\/payments.test.example" in the subjectTokens rule/);
    await expectRefusal(await exchangeByCertificate('reports-gateway', { subject_token: corporate, subject_token_type: ACCESS_TOKEN, resource: ORDERS, scope: 'orders:write' }),
      400, 'invalid_scope', 'reports-gateway', /orders:write/);
  });

  test('a token for another audience: invalid_grant', async () => {
    const elsewhere = await idp.accessToken('corp-batch', 'https://hr.corp.example');
    await expectRefusal(await exchangeByCertificate('reports-gateway', { subject_token: elsewhere, subject_token_type: ACCESS_TOKEN, resource: ORDERS }),
      400, 'invalid_grant', 'reports-gateway', /unexpected "aud" claim value/);
  });

  test('Tether issues no ID tokens: one that is not a trusted issuer\'s is an unsupported type, invalid_request', async () => {
    const own = (await tether.token({ client: 'mtls-client', resource: ORDERS })).accessToken;
    await expectRefusal(await exchangeByCertificate('mtls-client', { subject_token: own, subject_token_type: ID_TOKEN, resource: ORDERS }),
      400, 'invalid_request', 'mtls-client', /id_token from an issuer that is not a trusted external issuer/);
  });
});

describe('a workload with only its Kubernetes service-account token', () => {
  test('gets a DPoP-bound Tether token and exchanges it onward; the ledger traces both to the service account', async () => {
    const serviceAccountToken = await workerToken();
    const first = await exchangeAsWorkload({ subject_token: serviceAccountToken, subject_token_type: JWT, resource: ORDERS });
    expect({ status: first.status, type: first.body.token_type }).toEqual({ status: 200, type: 'DPoP' });
    const ordersClaims = await verified(first.body.access_token as string, ORDERS);
    expect({ sub: ordersClaims.sub, act: ordersClaims.act, external: ordersClaims.external_subject, cnf: ordersClaims.cnf }).toEqual({
      sub: 'payments-worker', act: undefined, external: { iss: cluster.issuer, sub: WORKER_SUB }, cnf: { jkt: dpopKey.thumbprint },
    });

    const onward = await exchangeAsWorkload({ subject_token: first.body.access_token as string, subject_token_type: ACCESS_TOKEN, resource: ORDER_HISTORY });
    expect(onward.status).toBe(200);
    const paymentsClaims = await verified(onward.body.access_token as string, ORDER_HISTORY);
    expect({ sub: paymentsClaims.sub, scope: paymentsClaims.scope, cnf: paymentsClaims.cnf }).toEqual({ sub: 'payments-worker', scope: 'orders:read', cnf: { jkt: dpopKey.thumbprint } });
    expect(paymentsClaims.exp!).toBeLessThanOrEqual(ordersClaims.exp!);

    const rows = await tether.database.knex('issued_tokens').whereIn('token_id', [ordersClaims.jti!, paymentsClaims.jti!]).orderBy('issued_at');
    expect(rows.map((row) => ({ parent: row.parent_token_id, issuer: row.external_issuer, subject: row.external_subject }))).toEqual([
      { parent: null, issuer: cluster.issuer, subject: WORKER_SUB },
      { parent: ordersClaims.jti, issuer: cluster.issuer, subject: WORKER_SUB },
    ]);
  });

  test('the new token never outlives the service-account token', async () => {
    const shortLived = await workerToken({ expiresIn: 90 });
    const response = await exchangeAsWorkload({ subject_token: shortLived, subject_token_type: JWT, resource: ORDERS });
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string).exp).toBeLessThanOrEqual(decodeJwt(shortLived).exp!);
  });

  test('expired, from another namespace, or bound to another key: invalid_grant', async () => {
    const past = Math.floor(Date.now() / 1000) - 4000;
    await expectRefusal(await exchangeAsWorkload({ subject_token: await workerToken({ issuedAt: past }), subject_token_type: JWT, resource: ORDERS }),
      400, 'invalid_grant', 'payments-worker', /"exp" claim timestamp check failed/);
    const otherNamespace = await workerToken({ claims: { 'kubernetes.io': { namespace: 'default' } } });
    await expectRefusal(await exchangeAsWorkload({ subject_token: otherNamespace, subject_token_type: JWT, resource: ORDERS }),
      400, 'invalid_grant', 'payments-worker', /no subjectTokens rule/);
    const boundElsewhere = await workerToken({ claims: { cnf: { jkt: 'another-key-thumbprint' } } });
    await expectRefusal(await exchangeAsWorkload({ subject_token: boundElsewhere, subject_token_type: JWT, resource: ORDERS }),
      400, 'invalid_grant', 'payments-worker', /an external token, presented without the key its cnf names/);
  });

  test('a bound external token never becomes a bearer token, even presented with its key', async () => {
    const exchangeForLegacy = async (claims: Record<string, unknown>) => postForm(tether.tokenEndpoint, {
      grant_type: TOKEN_EXCHANGE, client_id: 'legacy-gateway', client_secret: LEGACY_GATEWAY_SECRET, resource: LEGACY, subject_token_type: JWT,
      subject_token: await cluster.serviceAccountToken({ namespace: 'legacy', name: 'job', audience: tether.issuer, claims }),
    }, { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
    const unbound = await exchangeForLegacy({});
    expect({ status: unbound.status, type: unbound.body.token_type }).toEqual({ status: 200, type: 'Bearer' });
    const claims = decodeJwt(unbound.body.access_token as string);
    expect({ sub: claims.sub, act: claims.act, cnf: claims.cnf }).toEqual({ sub: 'legacy-job', act: { sub: 'legacy-gateway' }, cnf: undefined });
    await expectRefusal(await exchangeForLegacy({ cnf: { jkt: dpopKey.thumbprint } }), 400, 'invalid_grant', 'legacy-gateway', /would become a bearer token for client legacy-gateway/);
  });

  test('an act chain in the external token counts towards exchange.maxChainDepth', async () => {
    const deep = await workerToken({ claims: { act: { sub: 'a', act: { sub: 'b', act: { sub: 'c', act: { sub: 'd' } } } } } });
    await expectRefusal(await exchangeAsWorkload({ subject_token: deep, subject_token_type: JWT, resource: ORDERS }),
      400, 'invalid_request', 'payments-worker', /act chain depth 4 exceeds exchange.maxChainDepth 3/);
  });

  test('the cluster rotates its signing key: tokens of the new key are accepted once the cooldown allows a refetch', async () => {
    await cluster.rotate({ retire: true });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const response = await exchangeAsWorkload({ subject_token: await workerToken(), subject_token_type: JWT, resource: ORDERS });
    expect(response.status).toBe(200);
  });

  test('the cluster\'s JWKS is down when a new kid must be fetched: 503 temporarily_unavailable, never a token', async () => {
    const subjectToken = await workerToken({ header: { kid: 'not-yet-published' } });
    cluster.mode = 'down';
    try {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      // The assertion's own kid is cached; the subject token's is not, and the JWKS cannot be fetched.
      const response = await exchangeAsWorkload({ subject_token: subjectToken, subject_token_type: JWT, resource: ORDERS });
      expect({ status: response.status, error: response.body.error, retryAfter: response.headers.get('retry-after') !== null })
        .toEqual({ status: 503, error: 'temporarily_unavailable', retryAfter: true });
      expect(await lastRejection('payments-worker')).toMatchObject({ status: 503, reason: expect.stringMatching(/keys of .* unavailable/) });
    } finally {
      cluster.mode = 'ok';
    }
  });
});

import { decodeJwt } from 'jose';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, PAYMENTS, testConfig } from '../support/config.js';
import { postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { startKubernetesIssuer, type KubernetesIssuer } from './support/kubernetes_issuer.js';

/**
 * Federated client authentication (RFC 7523 §2.2) with tokens of a Kubernetes-shaped issuer served
 * over TLS from a discovery document and JWKS: a workload holding only its projected
 * service-account token gets a DPoP-bound Tether token; every bad assertion is invalid_client (or
 * 503 when the issuer cannot be asked), with its ledger rejection.
 */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const WORKER_SUB = 'system:serviceaccount:payments:worker';

let cluster: KubernetesIssuer;
let otherCluster: KubernetesIssuer;
let tether: RunningTether;
let dpopKey: DpopKey;

beforeAll(async () => {
  [cluster, otherCluster] = await Promise.all([startKubernetesIssuer(), startKubernetesIssuer()]);
  const trusted = (issuer: KubernetesIssuer) => ({ issuer: issuer.issuer, caFile: issuer.caFile, algorithms: ['RS256'], keyRefetchCooldown: 60, maxTokenAge: '2h' });
  tether = await startTestTether({
    config: {
      ...testConfig({
        clients: [
          {
            id: 'payments-worker', owner: 'team-payments', purpose: 'charges cards', binding: 'dpop',
            auth: { method: 'federated' },
            federatedIdentities: [{ issuer: cluster.issuer, subject: WORKER_SUB, claims: { 'kubernetes.io': { namespace: 'payments' } } }],
            resources: { [ORDERS]: ['orders:read'] },
          },
          {
            id: 'mtls-worker', owner: 'team-payments', purpose: 'tests', binding: 'mtls',
            auth: { method: 'federated' },
            federatedIdentities: [{ issuer: otherCluster.issuer, subject: 'system:serviceaccount:batch:runner' }],
            resources: { [PAYMENTS]: ['payments:read'] },
          },
          {
            id: 'bearer-worker', owner: 'team-legacy', purpose: 'tests', binding: 'none',
            auth: { method: 'federated' },
            federatedIdentities: [{ issuer: cluster.issuer, subject: 'system:serviceaccount:legacy:job' }],
            resources: { 'https://legacy.test.example': ['legacy:read'] },
          },
        ],
      }),
      federation: { issuers: [trusted(cluster), trusted(otherCluster)] },
    },
  });
  dpopKey = await createDpopKey();
});

afterAll(async () => {
  await tether?.close();
  await Promise.all([cluster?.close(), otherCluster?.close()]);
});

const tokenFor = (overrides: Partial<Parameters<KubernetesIssuer['serviceAccountToken']>[0]> = {}, issuer = cluster) =>
  issuer.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: tether.issuer, ...overrides });

async function authenticate(assertion: string, options: { clientId?: string; resource?: string; dpop?: boolean; form?: Record<string, string> } = {}): Promise<TokenResponse> {
  const headers: Record<string, string> = options.dpop === false ? {} : { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) };
  return postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials',
    client_id: options.clientId ?? 'payments-worker',
    client_assertion_type: JWT_BEARER,
    client_assertion: assertion,
    resource: options.resource ?? ORDERS,
    ...options.form,
  }, { dispatcher: tether.dispatcherFor(), headers });
}

/** The newest rejection of a client, after the anonymous-rejection window is written out. */
async function lastRejection(clientId = 'payments-worker'): Promise<Record<string, unknown>> {
  await tether.app.unauthenticatedRejections.flush();
  const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: clientId }).orderBy('id', 'desc').first();
  return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
}

async function expectInvalidClient(response: TokenResponse, reason: RegExp, clientId = 'payments-worker'): Promise<void> {
  expect({ status: response.status, error: response.body.error, description: response.body.error_description })
    .toEqual({ status: 401, error: 'invalid_client', description: 'client authentication failed' });
  expect(response.body.access_token).toBeUndefined();
  expect(await lastRejection(clientId)).toMatchObject({ error: 'invalid_client', status: 401, reason: expect.stringMatching(reason) });
}

describe('a workload with only its service-account token', () => {
  test('gets a DPoP-bound token for its API, with the external identity in the ledger', async () => {
    const assertion = await tokenFor();
    const response = await authenticate(assertion);
    expect({ status: response.status, type: response.body.token_type }).toEqual({ status: 200, type: 'DPoP' });
    const claims = decodeJwt(response.body.access_token as string);
    expect({ sub: claims.sub, aud: claims.aud, client_id: claims.client_id, cnf: claims.cnf }).toEqual({
      sub: 'payments-worker', aud: ORDERS, client_id: 'payments-worker', cnf: { jkt: dpopKey.thumbprint },
    });
    const row = await tether.database.knex('issued_tokens').where({ token_id: claims.jti }).first();
    expect({ issuer: row.external_issuer, subject: row.external_subject, tokenId: row.external_token_id }).toEqual({
      issuer: cluster.issuer, subject: WORKER_SUB, tokenId: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    const event = await tether.database.knex('ledger_events').where({ type: 'token.issued', token_id: claims.jti }).first();
    const details = typeof event.details === 'string' ? JSON.parse(event.details) : event.details;
    expect(details).toEqual({ external: { issuer: cluster.issuer, subject: WORKER_SUB, token_id: row.external_token_id } });
  });

  test('the same assertion a second time is a replay: invalid_client, and no second token', async () => {
    const assertion = await tokenFor();
    expect((await authenticate(assertion)).status).toBe(200);
    await expectInvalidClient(await authenticate(assertion), /was already used/);
  });

  test('two requests racing with one assertion: exactly one token', async () => {
    const assertion = await tokenFor();
    const statuses = (await Promise.all([authenticate(assertion), authenticate(assertion), authenticate(assertion)])).map((response) => response.status).sort();
    expect(statuses).toEqual([200, 401, 401]);
  });

  test('when the database cannot record the assertion\'s use: 503 temporarily_unavailable, never a token', async () => {
    const { knex } = tether.database;
    const before = await knex('issued_tokens').where({ client_id: 'payments-worker' }).count({ count: '*' }).then((rows) => Number(rows[0]!.count));
    // A real failure of the single-use statement on the real database: its table is gone for a moment.
    await knex.schema.renameTable('federated_assertions', 'federated_assertions_away');
    try {
      const response = await authenticate(await tokenFor());
      expect({ status: response.status, error: response.body.error, retryAfter: response.headers.get('retry-after') !== null })
        .toEqual({ status: 503, error: 'temporarily_unavailable', retryAfter: true });
      expect(response.body.access_token).toBeUndefined();
    } finally {
      await knex.schema.renameTable('federated_assertions_away', 'federated_assertions');
    }
    expect(await lastRejection()).toMatchObject({ status: 503, reason: expect.stringMatching(/^database unavailable: /) });
    expect(await knex('issued_tokens').where({ client_id: 'payments-worker' }).count({ count: '*' }).then((rows) => Number(rows[0]!.count))).toBe(before);
    expect((await authenticate(await tokenFor())).status).toBe(200);
  });

  test('a bare client_id is not enough for a federated client', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'payments-worker', resource: ORDERS },
      { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
    await expectInvalidClient(response, /authenticates only with a federated client_assertion/);
  });
});

describe('the other endpoints, and discovery', () => {
  test('a federated client revokes its own token with a fresh assertion; one without jti is refused there', async () => {
    const issued = await authenticate(await tokenFor());
    const token = issued.body.access_token as string;
    const revokeWith = (assertion: string) => postForm(tether.revocationEndpoint, {
      token, client_id: 'payments-worker', client_assertion_type: JWT_BEARER, client_assertion: assertion,
    }, { dispatcher: tether.dispatcherFor() });
    await expectInvalidClient(await revokeWith(await tokenFor({ withoutJti: true, expiresIn: 600 })), /has no jti: accepted only at the token endpoint/);
    expect((await revokeWith(await tokenFor())).status).toBe(200);
    const row = await tether.database.knex('issued_tokens').where({ token_id: decodeJwt(token).jti }).first();
    expect(row.revoked_at).not.toBeNull();
  });

  test('discovery does not advertise `none`, the registration federated clients have inside oidc-provider', async () => {
    const { fetch } = await import('undici');
    const metadata = await (await fetch(`${tether.issuer}/.well-known/oauth-authorization-server`, { dispatcher: tether.dispatcherFor() })).json() as Record<string, string[]>;
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth']);
    expect(metadata.introspection_endpoint_auth_methods_supported ?? []).not.toContain('none');
  });
});

describe('refused assertions', () => {
  test('another service account, or the right name in another namespace: not an identity of this client', async () => {
    await expectInvalidClient(await authenticate(await tokenFor({ name: 'intruder' })), /system:serviceaccount:payments:intruder.*is not a federated identity/);
    // sub says payments, the kubernetes.io claims say another namespace: the required claims decide too.
    const forged = await tokenFor({ claims: { 'kubernetes.io': { namespace: 'default', serviceaccount: { name: 'worker' } } } });
    await expectInvalidClient(await authenticate(forged), /is not a federated identity of client payments-worker/);
  });

  test('a trusted issuer\'s token naming a client that does not authenticate by federation', async () => {
    await expectInvalidClient(await authenticate(await tokenFor(), { clientId: 'dpop-client' }), /client dpop-client does not authenticate with federated identities/, 'dpop-client');
  });

  test('wrong audience, expired, too old, not yet valid', async () => {
    await expectInvalidClient(await authenticate(await tokenFor({ audience: 'https://kubernetes.default.svc' })), /unexpected "aud" claim value/);
    const past = Math.floor(Date.now() / 1000) - 4000;
    await expectInvalidClient(await authenticate(await tokenFor({ issuedAt: past, expiresIn: 3600 })), /"exp" claim timestamp check failed/);
    const old = Math.floor(Date.now() / 1000) - 3 * 3600;
    await expectInvalidClient(await authenticate(await tokenFor({ issuedAt: old, expiresIn: 4 * 3600 })), /"iat" claim timestamp check failed \(too far in the past\)/);
    const future = Math.floor(Date.now() / 1000) + 600;
    await expectInvalidClient(await authenticate(await tokenFor({ claims: { nbf: future } })), /"nbf" claim timestamp check failed/);
  });

  test('a token from an issuer that is not trusted', async () => {
    const untrusted = await startKubernetesIssuer();
    try {
      await expectInvalidClient(await authenticate(await tokenFor({}, untrusted)), /is not a trusted issuer/);
    } finally {
      await untrusted.close();
    }
  });

  test('issuer A claiming to be issuer B: B\'s keys do not verify it', async () => {
    const claimingOther = await cluster.sign({}, {
      iss: otherCluster.issuer, sub: 'system:serviceaccount:batch:runner', aud: [tether.issuer], jti: 'a-claims-b',
      iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600,
    });
    await expectInvalidClient(await authenticate(claimingOther, { clientId: 'mtls-worker', resource: PAYMENTS, dpop: false }), /no applicable key found in the JSON Web Key Set/, 'mtls-worker');
  });

  test('alg none, and HS256 keyed with the issuer\'s public key, are refused before any key is used', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: cluster.issuer, sub: WORKER_SUB, aud: [tether.issuer], iat: now, exp: now + 600, jti: 'alg-test', 'kubernetes.io': { namespace: 'payments' } };
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsecured = `${encode({ alg: 'none' })}.${encode(claims)}.`;
    await expectInvalidClient(await authenticate(unsecured), /alg "none" is not one of/);

    const { createHmac } = await import('node:crypto');
    const publicKeyAsSecret = JSON.stringify(cluster.publicJwk());
    const input = `${encode({ alg: 'HS256', kid: cluster.publicJwk().kid })}.${encode({ ...claims, jti: 'hs256-test' })}`;
    const hs256 = `${input}.${createHmac('sha256', publicKeyAsSecret).update(input).digest('base64url')}`;
    await expectInvalidClient(await authenticate(hs256), /alg "HS256" is not one of/);
  });

  test('a jku, x5u, x5c or jwk header is refused, and nothing is fetched from it', async () => {
    const before = { ...cluster.requests };
    for (const [name, value] of [['jku', `${cluster.issuer}/attacker-jwks`], ['x5u', `${cluster.issuer}/attacker.pem`], ['x5c', ['MIIB']], ['jwk', cluster.publicJwk()]] as const) {
      const token = await tokenFor({ header: { [name]: value } });
      await expectInvalidClient(await authenticate(token), new RegExp(`token header carries ${name}`));
    }
    expect(cluster.requests).toEqual(before);
  });

  test('a storm of unknown kids costs the issuer at most one JWKS fetch per cooldown', async () => {
    // Warm: the keys are known.
    expect((await authenticate(await tokenFor())).status).toBe(200);
    const before = cluster.requests.jwks;
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const token = await tokenFor({ header: { kid: `unknown-${attempt}` } });
      const response = await authenticate(token);
      expect(response.status).toBe(401);
    }
    expect(cluster.requests.jwks - before).toBeLessThanOrEqual(1);
    expect(await lastRejection()).toMatchObject({ error: 'invalid_client', reason: expect.stringMatching(/no applicable key found/) });
  });
});

describe('an issuer that cannot be asked', () => {
  test('down, answering garbage, 500 or 1 MiB, or its discovery document naming another issuer: 503 temporarily_unavailable with Retry-After, never a token', async () => {
    const fresh = await startKubernetesIssuer();
    const scoped = await startTestTether({
      config: {
        ...testConfig({
          clients: [{
            id: 'fresh-worker', owner: 'team', purpose: 'tests', binding: 'dpop', auth: { method: 'federated' },
            federatedIdentities: [{ issuer: fresh.issuer, subject: WORKER_SUB }], resources: { [ORDERS]: ['orders:read'] },
          }],
        }),
        // Cooldown 1 s: the test moves from one fault to the next without waiting long.
        federation: { issuers: [{ issuer: fresh.issuer, caFile: fresh.caFile, algorithms: ['RS256'], keyRefetchCooldown: 1, fetchTimeout: '2s' }] },
      },
    });
    const ask = async (token: string) => postForm(scoped.tokenEndpoint, {
      grant_type: 'client_credentials', client_id: 'fresh-worker', client_assertion_type: JWT_BEARER, client_assertion: token, resource: ORDERS,
    }, { dispatcher: scoped.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: scoped.tokenEndpoint }) } });
    const token = () => fresh.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: scoped.issuer });
    const rejection = async () => {
      await scoped.app.unauthenticatedRejections.flush();
      const row = await scoped.database.knex('ledger_events').where({ type: 'request.rejected', client_id: 'fresh-worker' }).orderBy('id', 'desc').first();
      return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
    };
    try {
      for (const [mode, reason] of [
        ['down', /discovery of .* failed/], ['garbage', /discovery of .* failed/], ['error', /discovery of .* failed/],
        ['impostor', /discovery document of .* names issuer "https:\/\/impostor.example"/],
        ['huge', /discovery of .* failed: .* answered more than 262144 bytes/],
      ] as const) {
        fresh.mode = mode;
        // Past the cooldown of the previous failure, so that this fault is the one asked.
        await new Promise((resolve) => setTimeout(resolve, 1100));
        const response = await ask(await token());
        expect({ status: response.status, error: response.body.error, retryAfter: response.headers.get('retry-after') !== null })
          .toEqual({ status: 503, error: 'temporarily_unavailable', retryAfter: true });
        expect(response.body.access_token).toBeUndefined();
        expect(await rejection()).toMatchObject({ status: 503, error: 'temporarily_unavailable', reason: expect.stringMatching(reason) });
      }
      fresh.mode = 'ok';
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await ask(await token())).status).toBe(200);
      // Keys known; the JWKS endpoint fails now: a known kid is still verified from the cache.
      fresh.mode = 'down';
      expect((await ask(await token())).status).toBe(200);
      expect(await scoped.database.knex('issued_tokens').where({ client_id: 'fresh-worker' }).count({ count: '*' }).then((rows) => Number(rows[0]!.count))).toBe(2);
    } finally {
      await scoped.close();
      await fresh.close();
    }
  });
});

describe('a down issuer is not asked once per request', () => {
  test('ten requests while its discovery document or its JWKS cannot be fetched: all 503, one fetch each per cooldown', async () => {
    const [byDiscovery, byJwksUri] = await Promise.all([startKubernetesIssuer(), startKubernetesIssuer()]);
    byDiscovery.mode = 'down';
    byJwksUri.mode = 'down';
    const scoped = await startTestTether({
      config: {
        ...testConfig({
          clients: [byDiscovery, byJwksUri].map((issuer, index) => ({
            id: `down-${index}`, owner: 'team', purpose: 'tests', binding: 'dpop', auth: { method: 'federated' },
            federatedIdentities: [{ issuer: issuer.issuer, subject: WORKER_SUB }], resources: { [ORDERS]: ['orders:read'] },
          })),
        }),
        federation: {
          issuers: [
            { issuer: byDiscovery.issuer, caFile: byDiscovery.caFile, algorithms: ['RS256'], keyRefetchCooldown: 600 },
            { issuer: byJwksUri.issuer, jwksUri: `${byJwksUri.issuer}/openid/v1/jwks`, caFile: byJwksUri.caFile, algorithms: ['RS256'], keyRefetchCooldown: 600 },
          ],
        },
      },
    });
    try {
      for (const [index, issuer] of [byDiscovery, byJwksUri].entries()) {
        for (let attempt = 0; attempt < 10; attempt += 1) {
          const response = await postForm(scoped.tokenEndpoint, {
            grant_type: 'client_credentials', client_id: `down-${index}`, client_assertion_type: JWT_BEARER, resource: ORDERS,
            client_assertion: await issuer.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: scoped.issuer }),
          }, { dispatcher: scoped.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: scoped.tokenEndpoint }) } });
          expect({ status: response.status, error: response.body.error }).toEqual({ status: 503, error: 'temporarily_unavailable' });
        }
      }
      expect(byDiscovery.requests).toEqual({ discovery: 1, jwks: 0 });
      expect(byJwksUri.requests).toEqual({ discovery: 0, jwks: 1 });
    } finally {
      await scoped.close();
      await Promise.all([byDiscovery.close(), byJwksUri.close()]);
    }
  });
});

describe('assertions without jti (API servers before Kubernetes 1.29)', () => {
  test('accepted again within their lifetime for a sender-constrained client; the new token is bound', async () => {
    const assertion = await tokenFor({ withoutJti: true, expiresIn: 600 });
    expect((await authenticate(assertion)).status).toBe(200);
    const again = await authenticate(assertion);
    expect(again.status).toBe(200);
    expect(decodeJwt(again.body.access_token as string).cnf).toEqual({ jkt: dpopKey.thumbprint });
  });

  test('refused for a client whose tokens are bearer tokens, and when it lives longer than maxTokenAge', async () => {
    const bearer = await cluster.serviceAccountToken({ namespace: 'legacy', name: 'job', audience: tether.issuer, withoutJti: true, expiresIn: 600 });
    await expectInvalidClient(await authenticate(bearer, { clientId: 'bearer-worker', resource: 'https://legacy.test.example', dpop: false }), /has no jti/, 'bearer-worker');
    const long = await tokenFor({ withoutJti: true, expiresIn: 3 * 3600 });
    await expectInvalidClient(await authenticate(long), /has no jti and lives 10800 s, longer than maxTokenAge 7200 s/);
  });
});

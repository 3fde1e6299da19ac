import { createHash, X509Certificate } from 'node:crypto';
import {
  base64url, calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWTPayload,
} from 'jose';
import * as oauth from 'oauth4webapi';
import { fetch, type Agent } from 'undici';
import type { RunningTether } from '../../../src/testing/start_tether.js';
import { basicAuth, discoverWithOauth4webapi, oauthFetch, postForm, startTestTether, type TokenResponse } from '../../support/tether.js';
import { API_B, API_C, API_D, API_E, C_VAULT, DPOP_SECRET, PAYROLL, ROAMER_SECRET, SHORT, UNKNOWN, VAULT, chainConfig } from './chain_config.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

let tether: RunningTether;
let as: oauth.AuthorizationServer;
const dispatchers = new Map<string, Agent>();

/** One TLS agent per client certificate (the harness closes them). */
function agent(certificateOf?: string): Agent {
  const key = certificateOf ?? '';
  if (!dispatchers.has(key)) dispatchers.set(key, tether.dispatcherFor(certificateOf));
  return dispatchers.get(key)!;
}


/** The private reason (`error_detail`) of the last refused token request: never in the response body. */
let lastDetail: string | undefined;

beforeAll(async () => {
  tether = await startTestTether({ config: chainConfig() });
  tether.app.provider.on('grant.error', (_ctx, error: { error_detail?: string }) => {
    lastDetail = error.error_detail;
  });
  as = await discoverWithOauth4webapi(tether, agent());
});

afterAll(async () => {
  await tether?.close();
});

/** client_credentials for an mTLS client over its own certificate. */
async function clientCredentials(clientId: string, resource: string, scope?: string): Promise<string> {
  const { status, body } = await postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials', client_id: clientId, resource, ...(scope ? { scope } : {}),
  }, { dispatcher: agent(clientId) });
  expect(status).toBe(200);
  return body.access_token as string;
}

/** A token exchange by an mTLS client (over its own certificate unless another dispatcher is given). */
function exchange(clientId: string, form: Record<string, string | string[] | undefined>, dispatcher = agent(clientId)): Promise<TokenResponse> {
  const defined = Object.fromEntries(Object.entries(form).filter(([, value]) => value !== undefined)) as Record<string, string | string[]>;
  return postForm(tether.tokenEndpoint, { grant_type: TOKEN_EXCHANGE, client_id: clientId, ...defined }, { dispatcher });
}

const subjectForm = (subjectToken: string, rest: Record<string, string | string[] | undefined> = {}) => ({
  subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, ...rest,
});

function thumbprintOf(clientId: string): string {
  return createHash('sha256').update(new X509Certificate(tether.pki.clients[clientId]!.certificatePem).raw).digest('base64url');
}

async function verifiedClaims(token: string, audience: string): Promise<JWTPayload> {
  const response = await fetch(tether.jwksUri, { dispatcher: agent() });
  const jwks = await response.json() as { keys: never[] };
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: tether.issuer, audience, typ: 'at+jwt' });
  return payload;
}

async function issuedRow(tokenId: string) {
  return tether.database.knex('issued_tokens').where({ token_id: tokenId }).first();
}

/** Marks one issued_tokens row revoked without the endpoint's cascade. */
async function revokeRowOnly(tokenId: string): Promise<void> {
  const updated = await tether.database.knex('issued_tokens').where({ token_id: tokenId }).update({ revoked_at: new Date() });
  expect(updated).toBe(1);
}

async function exchangedEventCount(): Promise<number> {
  const rows = await tether.database.knex('ledger_events').where({ type: 'token.exchanged' }).count({ count: '*' });
  return Number(rows[0]?.count);
}

/** The details of the newest `request.rejected` ledger event of a client. */
async function lastRejection(clientId: string): Promise<Record<string, unknown>> {
  const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: clientId }).orderBy('id', 'desc').first();
  return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
}

function expectRefusal(response: TokenResponse, status: number, error: string, detail?: string | RegExp): void {
  expect({ status: response.status, error: response.body.error }).toEqual({ status, error });
  expect(response.body.access_token).toBeUndefined();
  expect(response.body.error_detail).toBeUndefined();
  if (detail !== undefined) expect(lastDetail).toMatch(detail);
}

describe('the three-service chain A → B → C (RFC 8693 delegation)', () => {
  let tokenForB: string;
  let tokenForC: string;

  beforeAll(async () => {
    tokenForB = await clientCredentials('service-a', API_B, 'orders:read orders:write');
  });

  test('B exchanges A\'s token for C: fewer scopes, act = B, sub = A, expiry capped by A\'s, bound to B\'s certificate', async () => {
    const { status, body } = await exchange('service-b', subjectForm(tokenForB, { resource: API_C, scope: 'orders:read' }));
    expect(status).toBe(200);
    // RFC 8693 §2.2.1
    expect(body).toMatchObject({ issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', scope: 'orders:read' });
    expect(body.expires_in).toBeLessThanOrEqual(120);
    tokenForC = body.access_token as string;

    const subject = decodeJwt(tokenForB);
    const claims = await verifiedClaims(tokenForC, API_C);
    expect(decodeProtectedHeader(tokenForC).typ).toBe('at+jwt');
    expect(claims).toMatchObject({
      aud: API_C, sub: 'service-a', client_id: 'service-b', scope: 'orders:read', act: { sub: 'service-b' },
      cnf: { 'x5t#S256': thumbprintOf('service-b') },
    });
    expect(claims.cnf).not.toEqual(subject.cnf);
    // C's lifetime is 600 s, but the token may not outlive A's.
    expect(claims.exp!).toBeLessThanOrEqual(subject.exp!);
    expect(claims.exp!).toBeGreaterThanOrEqual(subject.exp! - 2);
  });

  test('the ledger row of the exchanged token names its parent (lineage)', async () => {
    const child = await issuedRow(decodeJwt(tokenForC).jti!);
    expect(child).toMatchObject({
      client_id: 'service-b', resource: API_C, scope: 'orders:read', binding_method: 'mtls',
      binding_thumbprint: thumbprintOf('service-b'), parent_token_id: decodeJwt(tokenForB).jti,
    });
    const act = typeof child.act === 'string' ? JSON.parse(child.act) : child.act;
    expect(act).toEqual({ sub: 'service-b' });
    const event = await tether.database.knex('ledger_events').where({ type: 'token.exchanged', token_id: decodeJwt(tokenForC).jti }).first();
    expect(event).toMatchObject({ parent_token_id: decodeJwt(tokenForB).jti, actor: 'service-b' });
  });

  test('C goes one hop further (act nests B inside C); D may not (exchange.maxChainDepth 2 → invalid_request)', async () => {
    const forD = await exchange('service-c', subjectForm(tokenForC, { resource: API_D }));
    expect(forD.status).toBe(200);
    const claims = decodeJwt(forD.body.access_token as string);
    expect(claims).toMatchObject({ sub: 'service-a', client_id: 'service-c', scope: 'orders:read', act: { sub: 'service-c', act: { sub: 'service-b' } } });
    expect(claims.exp!).toBeLessThanOrEqual(decodeJwt(tokenForB).exp!);

    const before = await exchangedEventCount();
    expectRefusal(await exchange('service-d', subjectForm(forD.body.access_token as string, { resource: API_E })), 400, 'invalid_request', 'act chain depth 3 exceeds exchange.maxChainDepth 2');
    expect(await exchangedEventCount()).toBe(before);
  });

  test('a target may be named by `audience` when it is a registered resource URI', async () => {
    const { status, body } = await exchange('service-b', subjectForm(tokenForB, { audience: API_C }));
    expect(status).toBe(200);
    // No scope requested: everything both in A's token and exchangeable at C.
    expect(body.scope).toBe('orders:read orders:write');
  });

  test('an actor token that is the requesting client\'s own, with its key, is accepted; someone else\'s is not', async () => {
    const own = await clientCredentials('service-b', API_D);
    const accepted = await exchange('service-b', subjectForm(tokenForB, { resource: API_C, actor_token: own, actor_token_type: ACCESS_TOKEN_TYPE }));
    expect(accepted.status).toBe(200);
    expect(decodeJwt(accepted.body.access_token as string).act).toEqual({ sub: 'service-b' });

    expectRefusal(await exchange('service-b', subjectForm(tokenForB, { resource: API_C, actor_token: tokenForB, actor_token_type: ACCESS_TOKEN_TYPE })), 400, 'invalid_grant', 'actor token of client service-a presented by client service-b');
  });
});

describe('opaque subject tokens', () => {
  test('are found through oidc-provider, and the parent id is the hashed id the ledger keeps', async () => {
    const opaque = await clientCredentials('service-a', VAULT);
    expect(opaque.split('.')).toHaveLength(1);
    const { status, body } = await exchange('service-b', subjectForm(opaque, { resource: API_C }));
    expect(status).toBe(200);
    const claims = decodeJwt(body.access_token as string);
    expect(claims).toMatchObject({ sub: 'service-a', act: { sub: 'service-b' }, scope: 'orders:read' });
    expect((await issuedRow(claims.jti!)).parent_token_id).toBe(createHash('sha256').update(opaque).digest('base64url'));
  });

  test('an exchanged opaque token keeps sub and act for the next hop', async () => {
    const forB = await clientCredentials('service-a', API_B, 'orders:read');
    const { status, body } = await exchange('service-b', subjectForm(forB, { resource: C_VAULT }));
    expect(status).toBe(200);
    expect((body.access_token as string).split('.')).toHaveLength(1);
    const next = await exchange('service-c', subjectForm(body.access_token as string, { resource: API_D }));
    expect(next.status).toBe(200);
    expect(decodeJwt(next.body.access_token as string)).toMatchObject({ sub: 'service-a', act: { sub: 'service-c', act: { sub: 'service-b' } } });
  });

  test('declared as a JWT → invalid_request; unknown → invalid_grant', async () => {
    const opaque = await clientCredentials('service-a', VAULT);
    expectRefusal(await exchange('service-b', { subject_token: opaque, subject_token_type: JWT_TOKEN_TYPE, resource: API_C }), 400, 'invalid_request');
    expectRefusal(await exchange('service-b', subjectForm('x'.repeat(43), { resource: API_C })), 400, 'invalid_grant', 'opaque token not found');
  });
});

describe('request rejections (RFC 8693 §2.1, §2.2.2)', () => {
  let tokenForB: string;
  beforeAll(async () => {
    tokenForB = await clientCredentials('service-a', API_B, 'orders:read');
  });

  test.each([
    ['no subject_token', { subject_token_type: ACCESS_TOKEN_TYPE, resource: API_C }],
    ['no subject_token_type', { subject_token: 'SUBJECT', resource: API_C }],
    ['subject_token twice', { subject_token: ['SUBJECT', 'SUBJECT'], subject_token_type: ACCESS_TOKEN_TYPE, resource: API_C }],
    ['subject_token_type twice', { subject_token: 'SUBJECT', subject_token_type: [ACCESS_TOKEN_TYPE, ACCESS_TOKEN_TYPE], resource: API_C }],
    ['subject_token_type refresh_token', { subject_token: 'SUBJECT', subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token', resource: API_C }],
    ['subject_token_type id_token', { subject_token: 'SUBJECT', subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: API_C }],
    ['requested_token_type refresh_token', { ...subjectForm('SUBJECT'), requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token', resource: API_C }],
    ['actor_token without actor_token_type', { ...subjectForm('SUBJECT'), actor_token: 'SUBJECT', resource: API_C }],
  ])('%s → 400 invalid_request', async (_label, form) => {
    const withToken = JSON.parse(JSON.stringify(form).replaceAll('SUBJECT', tokenForB)) as Record<string, string | string[]>;
    expectRefusal(await exchange('service-b', withToken), 400, 'invalid_request');
  });

  // Each refusal has the public description that fits it; the private reason names resource and client.
  test.each([
    ['no resource or audience', {}, 'a resource or audience parameter is required', 'no resource or audience requested'],
    ['two resources', { resource: [API_C, API_D] }, 'exactly one resource or audience parameter is required', '2 target values requested'],
    ['a resource and an audience', { resource: API_C, audience: API_C }, 'exactly one resource or audience parameter is required', '2 target values requested'],
    ['an unknown resource', { resource: UNKNOWN }, 'the requested resource is not registered at this server', `unknown exchange target "${UNKNOWN}" (resource)`],
    ['an unknown audience', { audience: 'orders-service' }, 'the requested audience is not a resource registered at this server', 'unknown exchange target "orders-service" (audience)'],
    ['a registered resource not permitted for this client\'s exchanges', { resource: API_E }, 'this client may not obtain tokens for the requested resource by token exchange',
      `exchange target ${API_E} is not permitted for client service-b (not in exchange.targets)`],
    ['a resource this client may obtain by client_credentials but not by exchange', { resource: API_D }, 'this client may not obtain tokens for the requested resource by token exchange',
      `exchange target ${API_D} is not permitted for client service-b (not in exchange.targets)`],
  ])('%s → 400 invalid_target with its own description', async (_label, target, description, reason) => {
    const response = await exchange('service-b', subjectForm(tokenForB, target));
    expectRefusal(response, 400, 'invalid_target', reason);
    expect(response.body.error_description).toBe(description);
    const rejected = await lastRejection('service-b');
    expect(rejected).toMatchObject({ error: 'invalid_target', error_description: description, reason });
  });

  test.each([
    ['a scope the subject token does not carry (widening)', 'orders:write'],
    ['a scope the target does not declare', 'orders:read orders:refund'],
  ])('%s → 400 invalid_scope', async (_label, scope) => {
    expectRefusal(await exchange('service-b', subjectForm(tokenForB, { resource: API_C, scope })), 400, 'invalid_scope');
  });

  test('no scope left in the intersection → 400 invalid_scope', async () => {
    const writeOnly = await clientCredentials('service-a', API_B, 'orders:write');
    // service-b may obtain only orders:read at the vault by exchange.
    expectRefusal(await exchange('service-b', subjectForm(writeOnly, { resource: VAULT })), 400, 'invalid_scope');
  });
});

describe('subject tokens Tether will not exchange → 400 invalid_grant', () => {
  let tokenForB: string;
  beforeAll(async () => {
    tokenForB = await clientCredentials('service-a', API_B, 'orders:read');
  });

  test('a JWT signed by a foreign key under Tether\'s kid, iss and typ', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const header = decodeProtectedHeader(tokenForB);
    const forged = await new SignJWT({ ...decodeJwt(tokenForB), scope: 'orders:read orders:write' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: header.kid })
      .sign(privateKey);
    const response = await exchange('service-b', subjectForm(forged, { resource: API_C }));
    expectRefusal(response, 400, 'invalid_grant', 'signature verification failed');
    expect(response.body.error_description).toBe('subject_token is invalid, expired, revoked, or not acceptable for this client');
  });

  test('a tampered JWT (widened scope, original signature)', async () => {
    const [header, , signature] = tokenForB.split('.');
    const payload = base64url.encode(JSON.stringify({ ...decodeJwt(tokenForB), scope: 'orders:read orders:write' }));
    expectRefusal(await exchange('service-b', subjectForm(`${header}.${payload}.${signature}`, { resource: API_C })), 400, 'invalid_grant', 'signature verification failed');
  });

  test('an expired token', async () => {
    const short = await clientCredentials('service-a', SHORT);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expectRefusal(await exchange('service-b', subjectForm(short, { resource: API_C })), 400, 'invalid_grant', /"exp" claim/);
  });

  test('a token its client revoked (RFC 7009 endpoint), and the tokens exchanged from it (cascade)', async () => {
    const revoked = await clientCredentials('service-a', API_B, 'orders:read');
    const child = await exchange('service-b', subjectForm(revoked, { resource: API_C }));
    expect(child.status).toBe(200);
    const revocation = await postForm(as.revocation_endpoint!, { client_id: 'service-a', token: revoked }, { dispatcher: agent('service-a') });
    expect(revocation.status).toBe(200);
    expect((await issuedRow(decodeJwt(child.body.access_token as string).jti!)).revoked_at).not.toBeNull();

    expectRefusal(await exchange('service-b', subjectForm(revoked, { resource: API_C })), 400, 'invalid_grant', / was revoked$/);
    expectRefusal(await exchange('service-c', subjectForm(child.body.access_token as string, { resource: API_D })), 400, 'invalid_grant', / was revoked$/);
  });

  test('a token whose ancestor is revoked, even before the cascade reached it', async () => {
    // An exchange that commits while its parent is being revoked can miss the cascade; the lineage
    // walk still refuses to exchange it further.
    const parent = await clientCredentials('service-a', API_B, 'orders:read');
    const child = await exchange('service-b', subjectForm(parent, { resource: API_C }));
    expect(child.status).toBe(200);
    await revokeRowOnly(decodeJwt(parent).jti!);
    expectRefusal(await exchange('service-c', subjectForm(child.body.access_token as string, { resource: API_D })), 400, 'invalid_grant', 'descends from revoked token');
  });

  test('a token of a client this client may not act for', async () => {
    expectRefusal(await exchange('mallory', subjectForm(tokenForB, { resource: API_C })), 400, 'invalid_grant', 'client mallory may not act for client service-a');
  });

  test('a leaked token of the client it acts for, for an API this client does not serve (Keycloak #52691 class)', async () => {
    // service-b acts for service-a and accepts its bound tokens, but A's payroll token was never sent
    // to B: B got it by a leak. Before servedBy, B turned it into a token for C bound to B's certificate.
    const leaked = await clientCredentials('service-a', PAYROLL, 'orders:read');
    const exchangedBefore = await exchangedEventCount();
    const issuedBefore = await tether.database.knex('issued_tokens').where({ client_id: 'service-b' }).count({ count: '*' });

    const response = await exchange('service-b', subjectForm(leaked, { resource: API_C, scope: 'orders:read' }));
    const reason = `subject token ${decodeJwt(leaked).jti} is for ${PAYROLL}, which client service-b does not serve (resources[].servedBy)`;
    expectRefusal(response, 400, 'invalid_grant', reason);
    expect(response.body.error_description).toBe('subject_token is invalid, expired, revoked, or not acceptable for this client');
    expect(await lastRejection('service-b')).toMatchObject({ error: 'invalid_grant', grant_type: TOKEN_EXCHANGE, reason });
    expect(await exchangedEventCount()).toBe(exchangedBefore);
    expect(await tether.database.knex('issued_tokens').where({ client_id: 'service-b' }).count({ count: '*' })).toEqual(issuedBefore);

    // Named by audience, without a scope: refused the same way.
    expectRefusal(await exchange('service-b', subjectForm(leaked, { audience: API_C })), 400, 'invalid_grant', reason);

    // Sixteen at once: sixteen refusals, still no token.
    const burst = await Promise.all(Array.from({ length: 16 }, () => exchange('service-b', subjectForm(leaked, { resource: API_C }))));
    expect(burst.map((each) => [each.status, each.body.error])).toEqual(Array.from({ length: 16 }, () => [400, 'invalid_grant']));
    expect(await exchangedEventCount()).toBe(exchangedBefore);
  });

  test('an opaque token of the client it acts for, for an API this client does not serve', async () => {
    // b-strict serves B, not the vault: A's opaque vault token never reached it legitimately.
    const opaque = await clientCredentials('service-a', VAULT);
    expectRefusal(await exchange('b-strict', subjectForm(opaque, { resource: API_C })), 400, 'invalid_grant',
      `subject token ${createHash('sha256').update(opaque).digest('base64url')} is for ${VAULT}, which client b-strict does not serve (resources[].servedBy)`);
  });

  test('a token of the client it acts for that was meant for the next hop: C may not exchange B\'s token for D', async () => {
    // service-c acts for service-b, but B's client_credentials token for API_D is D's to receive, not C's.
    const forD = await clientCredentials('service-b', API_D);
    expectRefusal(await exchange('service-c', subjectForm(forD, { resource: API_D })), 400, 'invalid_grant',
      `subject token ${decodeJwt(forD).jti} is for ${API_D}, which client service-c does not serve (resources[].servedBy)`);
  });

  test('a bound token of a client it may act for, without acceptBoundSubjectTokens (no stripping of the binding)', async () => {
    expectRefusal(await exchange('b-strict', subjectForm(tokenForB, { resource: API_C })), 400, 'invalid_grant', 'exchange.acceptBoundSubjectTokens is off');
  });
});

describe('a stolen sender-constrained subject token presented with another key → 400 invalid_grant', () => {
  const roamerForm = (form: Record<string, string>) => ({ grant_type: TOKEN_EXCHANGE, ...form });
  const roamerHeaders = { authorization: basicAuth('roamer', ROAMER_SECRET) };

  test('certificate-bound: the holder\'s certificate works, another certificate does not', async () => {
    // roamer authenticates by secret; its tokens are bound to whatever certificate it connects with.
    const issued = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: API_B }, { dispatcher: agent('mallory'), headers: roamerHeaders });
    expect(issued.status).toBe(200);
    const token = issued.body.access_token as string;
    expect(decodeJwt(token).cnf).toEqual({ 'x5t#S256': thumbprintOf('mallory') });

    const holder = await postForm(tether.tokenEndpoint, roamerForm(subjectForm(token, { resource: API_C }) as Record<string, string>), { dispatcher: agent('mallory'), headers: roamerHeaders });
    expect(holder.status).toBe(200);
    expect(decodeJwt(holder.body.access_token as string)).toMatchObject({ sub: 'roamer', cnf: { 'x5t#S256': thumbprintOf('mallory') } });
    expect(decodeJwt(holder.body.access_token as string).act).toBeUndefined();

    const thief = await postForm(tether.tokenEndpoint, roamerForm(subjectForm(token, { resource: API_C }) as Record<string, string>), { dispatcher: agent('b-strict'), headers: roamerHeaders });
    expectRefusal(thief, 400, 'invalid_grant', 'is bound to another certificate; client roamer: its own token, presented without the key it is bound to');
    expect(thief.body.error_description).toBe('subject_token is invalid, expired, revoked, or not acceptable for this client');
    // The private reason is for operators: the ledger's rejection event carries it.
    const rejected = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: 'roamer' }).orderBy('id', 'desc').first();
    const details = typeof rejected.details === 'string' ? JSON.parse(rejected.details) : rejected.details;
    expect(details).toMatchObject({ error: 'invalid_grant', grant_type: TOKEN_EXCHANGE, reason: expect.stringContaining('is bound to another certificate') });
  });

  test('DPoP-bound: a proof by the same key works (new token DPoP-bound to it), another key does not', async () => {
    const client: oauth.Client = { client_id: 'dpop-svc' };
    const auth = oauth.ClientSecretBasic(DPOP_SECRET);
    const options = (keyPair: oauth.CryptoKeyPair) => ({ DPoP: oauth.DPoP(client, keyPair), [oauth.customFetch]: oauthFetch(agent()) });
    const holderKey = await oauth.generateKeyPair('ES256');
    const otherKey = await oauth.generateKeyPair('ES256');

    const issued = await oauth.processClientCredentialsResponse(as, client,
      await oauth.clientCredentialsGrantRequest(as, client, auth, { resource: API_B }, options(holderKey)));
    const jkt = await calculateJwkThumbprint(await exportJWK(holderKey.publicKey));
    expect(decodeJwt(issued.access_token).cnf).toEqual({ jkt });

    const params = { subject_token: issued.access_token, subject_token_type: ACCESS_TOKEN_TYPE, resource: API_C };
    const exchanged = await oauth.processGenericTokenEndpointResponse(as, client,
      await oauth.genericTokenEndpointRequest(as, client, auth, TOKEN_EXCHANGE, params, options(holderKey)));
    // oauth4webapi normalises token_type to lower case.
    expect(exchanged).toMatchObject({ token_type: 'dpop', issued_token_type: ACCESS_TOKEN_TYPE, scope: 'orders:read' });
    expect(decodeJwt(exchanged.access_token)).toMatchObject({ aud: API_C, sub: 'dpop-svc', cnf: { jkt } });

    const thief = await oauth.genericTokenEndpointRequest(as, client, auth, TOKEN_EXCHANGE, params, options(otherKey));
    expect(thief.status).toBe(400);
    expect((await thief.json() as Record<string, unknown>).error).toBe('invalid_grant');
    expect(lastDetail).toMatch('is bound to another DPoP key');

    // Without any proof, the token's key is not demonstrated either.
    const bare = await postForm(tether.tokenEndpoint, { grant_type: TOKEN_EXCHANGE, ...params }, { dispatcher: agent(), headers: { authorization: basicAuth('dpop-svc', DPOP_SECRET) } });
    expectRefusal(bare, 400, 'invalid_grant', 'is bound to another DPoP key');
  });
});

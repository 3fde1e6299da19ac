import { execFileSync } from 'node:child_process';
import { createRemoteJWKSet, customFetch as customFetchSymbol, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import type { Agent } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, LEGACY, LEGACY_SECRET, ORDERS, PAYMENTS, REPORTS, UNKNOWN, testConfig } from '../support/config.js';
import { basicAuth, discoverWithOauth4webapi, oauthFetch, postForm, startTestTether } from '../support/tether.js';

let tether: RunningTether;
let mtls: Agent;
let anonymous: Agent;
let as: oauth.AuthorizationServer;


beforeAll(async () => {
  tether = await startTestTether({ config: testConfig() });
  mtls = tether.dispatcherFor('mtls-client');
  anonymous = tether.dispatcherFor();
  as = await discoverWithOauth4webapi(tether, anonymous);
});

afterAll(async () => {
  await tether?.close();
});

function opensslThumbprint(pem: string): string {
  const der = execFileSync('openssl', ['x509', '-outform', 'DER'], { input: pem });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64url');
}

const mtlsToken = (form: Record<string, string | string[]>, dispatcher = mtls) =>
  postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'mtls-client', ...form }, { dispatcher });

describe('client_credentials with an mTLS-bound client (RFC 8705, RFC 8707, RFC 9068)', () => {
  test('issues an at+jwt for exactly the requested resource, bound to the TLS client certificate', async () => {
    const { status, body } = await mtlsToken({ resource: ORDERS, scope: 'orders:read' });
    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', scope: 'orders:read' });
    expect(body.expires_in).toBeGreaterThan(290);
    expect(body.expires_in).toBeLessThanOrEqual(300);

    const token = body.access_token as string;
    expect(decodeProtectedHeader(token)).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ iss: tether.issuer, sub: 'mtls-client', client_id: 'mtls-client', aud: ORDERS, scope: 'orders:read' });
    expect(typeof claims.jti).toBe('string');
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(claims.cnf).toEqual({ 'x5t#S256': opensslThumbprint(tether.pki.clients['mtls-client']!.certificatePem) });
  });

  test('independent validators accept it: jose against the published JWKS (oauth4webapi supports only cnf.jkt)', async () => {
    const { body } = await mtlsToken({ resource: PAYMENTS });
    const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), { [customFetchSymbol]: oauthFetch(anonymous) } as never);
    const { payload, protectedHeader } = await jwtVerify(body.access_token as string, jwks, {
      issuer: tether.issuer, audience: PAYMENTS, typ: 'at+jwt', algorithms: ['ES256'],
    });
    expect(protectedHeader.kid).toEqual(expect.any(String));
    expect(payload.scope).toBe('payments:read');

    // oauth4webapi's validateJwtAccessToken refuses x5t#S256 confirmation outright.
    const request = new Request('https://payments.test.example/charges', { headers: { authorization: `Bearer ${body.access_token as string}` } });
    await expect(oauth.validateJwtAccessToken(as, request, PAYMENTS, { [oauth.customFetch]: oauthFetch(anonymous) }))
      .rejects.toThrow('unsupported JWT Confirmation method');
  });

  test('oauth4webapi validates an unbound legacy token as RFC 9068', async () => {
    const { body } = await postForm(tether.tokenEndpoint, {
      grant_type: 'client_credentials', client_id: 'legacy-client', client_secret: LEGACY_SECRET, resource: LEGACY,
    }, { dispatcher: anonymous });
    const request = new Request('https://legacy.test.example/', { headers: { authorization: `Bearer ${body.access_token as string}` } });
    const claims = await oauth.validateJwtAccessToken(as, request, LEGACY, { [oauth.customFetch]: oauthFetch(anonymous) });
    expect(claims).toMatchObject({ aud: LEGACY, client_id: 'legacy-client', sub: 'legacy-client', iss: tether.issuer });
  });

  test('no scope requested: the client gets its granted scopes for that resource', async () => {
    const { status, body } = await mtlsToken({ resource: ORDERS });
    expect(status).toBe(200);
    expect(body.scope).toBe('orders:read orders:write');
    expect(decodeJwt(body.access_token as string).scope).toBe('orders:read orders:write');
  });

  test('per-resource lifetime and the opaque format', async () => {
    const payments = await mtlsToken({ resource: PAYMENTS });
    const claims = decodeJwt(payments.body.access_token as string);
    expect(claims.exp! - claims.iat!).toBe(120);

    const reports = await mtlsToken({ resource: REPORTS });
    expect(reports.status).toBe(200);
    expect((reports.body.access_token as string).split('.')).toHaveLength(1);
  });

  test('a client with a default resource may omit `resource`', async () => {
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'default-client' }, { dispatcher: tether.dispatcherFor('default-client') });
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).aud).toBe(ORDERS);
  });
});

describe('resource indicator and scope policy rejections', () => {
  // Each refusal has the public description that fits it; the private reason is in the ledger only.
  test.each([
    ['no resource and no default resource', {}, 'the resource parameter is required', 'no resource requested and the client has no default resource'],
    ['two resource values', { resource: [ORDERS, PAYMENTS] }, 'exactly one resource parameter is required', '2 resource values requested'],
    ['the same resource twice', { resource: [ORDERS, ORDERS] }, 'exactly one resource parameter is required', '2 resource values requested'],
    ['an unknown resource', { resource: UNKNOWN }, 'the requested resource is not registered at this server', `unknown resource "${UNKNOWN}"`],
    ['a registered resource not permitted for this client', { resource: LEGACY }, 'this client may not obtain tokens for the requested resource', `resource ${LEGACY} is not permitted for client mtls-client`],
    ['a resource differing from the registered string only by a trailing slash', { resource: `${ORDERS}/` }, 'the requested resource is not registered at this server', `unknown resource "${ORDERS}/"`],
    ['a relative resource', { resource: '/orders' }, 'the requested resource is not registered at this server', 'unknown resource "/orders"'],
  ])('%s → 400 invalid_target with its own description', async (_label, form, description, reason) => {
    const { status, body } = await mtlsToken(form as Record<string, string | string[]>);
    expect({ status, body }).toEqual({ status: 400, body: { error: 'invalid_target', error_description: description } });
    const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: 'mtls-client' }).orderBy('id', 'desc').first();
    const details = typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
    expect(details).toMatchObject({ error: 'invalid_target', error_description: description, reason });
  });

  test.each([
    ['a scope declared by the resource but not granted to the client', 'payments:charge', PAYMENTS],
    ['a scope of another resource', 'orders:read', PAYMENTS],
    ['an undeclared scope', 'orders:admin', ORDERS],
    ['one granted and one not granted scope', 'orders:read orders:admin', ORDERS],
  ])('%s → 400 invalid_scope (never silently dropped)', async (_label, scope, resource) => {
    const { status, body } = await mtlsToken({ resource, scope });
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_scope');
  });
});

describe('client authentication failures are 401 invalid_client with no hint', () => {
  test('tls_client_auth without a certificate', async () => {
    const { status, body } = await mtlsToken({ resource: ORDERS }, anonymous);
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
    expect(body.error_description).toBe('client authentication failed');
  });

  test('tls_client_auth with another client\'s certificate', async () => {
    const { status, body } = await mtlsToken({ resource: ORDERS }, tether.dispatcherFor('default-client'));
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
    expect(body.error_description).toBe('client authentication failed');
  });

  test('a wrong client secret and an unknown client look the same', async () => {
    const wrong = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, { dispatcher: anonymous, headers: { authorization: basicAuth('dpop-client', `${DPOP_SECRET}x`) } });
    const unknown = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, { dispatcher: anonymous, headers: { authorization: basicAuth('nobody', DPOP_SECRET) } });
    for (const { status, body } of [wrong, unknown]) {
      expect(status).toBe(401);
      expect(body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    }
  });
});

describe('bearer tokens only where a resource allows them', () => {
  test('a legacy client gets an unbound token for a resource with allowBearer', async () => {
    const { status, body } = await postForm(tether.tokenEndpoint, {
      grant_type: 'client_credentials', client_id: 'legacy-client', client_secret: LEGACY_SECRET, resource: LEGACY,
    }, { dispatcher: anonymous });
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).cnf).toBeUndefined();
  });

  test('an mTLS client never receives an unbound token, even without a certificate on a bearer-allowing resource', async () => {
    const { status } = await mtlsToken({ resource: LEGACY }, anonymous);
    expect(status).toBe(401);
  });
});

import fc from 'fast-check';
import { decodeJwt } from 'jose';
import * as oauth from 'oauth4webapi';
import { fetch } from 'undici';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, LEGACY, LEGACY_SECRET, ORDERS, testConfig } from '../support/config.js';
import { assertingClient, assertionForm, EVIL_TOKEN_ENDPOINT, rejectionOf, type AssertingClient } from '../support/hostile_requests.js';
import { rawRequest, type RawRequest } from '../support/raw_request.js';
import { basicAuth, startTestTether } from '../support/tether.js';

/**
 * The URLs Tether compares (client assertion `aud`, DPoP `htu`) and advertises (discovery) come from
 * its configuration, never from the request: each attack sends a hostile Host, X-Forwarded-* or
 * request target straight to Tether (test/http/reverse_proxy.test.ts repeats them through nginx), and
 * a client secret over plain HTTP. 127.0.0.2 plays the trusted proxy hop; the tests' own address,
 * 127.0.0.1, is an untrusted peer.
 */

const TRUSTED_HOP = '127.0.0.2';
const EVIL = 'evil.example';

let tether: RunningTether;
let jwtClient: AssertingClient;
/** Host of the issuer (`localhost:<port>`), and the two listeners to connect to. */
let issuerHost: string;
let httpsListener: string;
let httpListener: string;

beforeAll(async () => {
  jwtClient = await assertingClient();
  tether = await startTestTether({
    config: { ...testConfig({ clients: [jwtClient.config] }), trustedProxies: [TRUSTED_HOP] },
    http: true,
  });
  issuerHost = new URL(tether.issuer).host;
  httpsListener = `https://127.0.0.1:${new URL(tether.origin).port}`;
  httpListener = tether.httpOrigin!;
});

afterAll(async () => {
  await tether?.close();
});

/** A request to the HTTPS listener (unless `connectTo` says otherwise), addressed to the issuer. */
function send(request: Partial<RawRequest> & { headers?: Record<string, string | string[]> }) {
  return rawRequest({
    connectTo: httpsListener,
    target: '/token',
    ca: tether.pki.ca.certificatePem,
    ...request,
    headers: { host: issuerHost, ...request.headers },
  });
}

const proofFor = async (htu: string) => dpopProof(await createDpopKey(), { htm: 'POST', htu });
const refusedHost = { error: 'invalid_request', error_description: 'this server does not serve the requested host' };
const clientAuthFailed = { error: 'invalid_client', error_description: 'client authentication failed' };
const tlsRequired = { error: 'invalid_request', error_description: 'client secrets are accepted only over TLS (https); this request was sent over plain HTTP' };

describe('client assertion audience: the issuer, as one string (RFC 7523 §3, draft-ietf-oauth-rfc7523bis)', () => {
  test('aud = the issuer → a token', async () => {
    const response = await send({ form: assertionForm(await jwtClient.assertion(tether.issuer)), headers: { dpop: await proofFor(tether.tokenEndpoint) } });
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string).client_id).toBe('jwt-client');
  });

  test('an assertion for evil.example/token replayed with Host: evil.example → 421, recorded, no token', async () => {
    const response = await send({
      form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)),
      headers: { host: EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) },
    });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
    expect(await rejectionOf(tether, response)).toMatchObject({
      source_address: '127.0.0.1',
      details: { route: 'token', status: 421, error: 'invalid_request', reason: 'request for https://evil.example, which is neither the issuer nor this listener' },
    });
  });

  test('the same assertion in an absolute-form request target (RFC 9112 §3.2.2) → 421', async () => {
    const response = await send({ target: EVIL_TOKEN_ENDPOINT, form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)), headers: { dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
  });

  test.each([
    ['from an untrusted peer', undefined],
    ['from the trusted proxy hop', TRUSTED_HOP],
  ])('the same assertion with X-Forwarded-Host: evil.example %s → 401 invalid_client (the header is never read)', async (_label, localAddress) => {
    const response = await send({
      localAddress,
      form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)),
      headers: { 'x-forwarded-host': EVIL, 'x-forwarded-proto': 'https', dpop: await proofFor(EVIL_TOKEN_ENDPOINT) },
    });
    expect(response.status).toBe(401);
    expect(response.body).toEqual(clientAuthFailed);
    expect(await rejectionOf(tether, response)).toMatchObject({
      client_id: 'jwt-client',
      details: { error: 'invalid_client', reason: 'audience (aud) must equal the endpoint url, issuer identifier or token endpoint url' },
    });
  });

  test.each([
    ['the token endpoint URL', () => tether.tokenEndpoint],
    ['[issuer] (an array)', () => [tether.issuer]],
    ['[issuer, evil.example/token]', () => [tether.issuer, EVIL_TOKEN_ENDPOINT]],
    ['the issuer with a trailing slash', () => `${tether.issuer}/`],
  ])('aud = %s → 401 invalid_client, reason recorded', async (_label, aud) => {
    const response = await send({ form: assertionForm(await jwtClient.assertion(aud())), headers: { dpop: await proofFor(tether.tokenEndpoint) } });
    expect(response.status).toBe(401);
    expect(response.body).toEqual(clientAuthFailed);
    const { details } = await rejectionOf(tether, response);
    expect(details.reason).toMatch(/^audience \(aud\) must /);
  });
});

describe('DPoP htu: the configured URL of the endpoint (RFC 9449 §4.3)', () => {
  const secretRequest = (extra: Partial<RawRequest> & { headers?: Record<string, string> }) => send({
    ...extra,
    form: { grant_type: 'client_credentials', resource: ORDERS },
    headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), ...extra.headers },
  });

  test('htu = the issuer\'s token endpoint → a token bound to the proof\'s key', async () => {
    const key = await createDpopKey();
    const response = await secretRequest({ headers: { dpop: await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint }) } });
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string).cnf).toEqual({ jkt: key.thumbprint });
  });

  test('a proof for evil.example/token with Host: evil.example → 421, no token', async () => {
    const response = await secretRequest({ headers: { host: EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
    expect(await rejectionOf(tether, response)).toMatchObject({ details: { status: 421, route: 'token' } });
  });

  test.each([
    ['with the issuer\'s Host', {}, undefined],
    ['with X-Forwarded-Host: evil.example from the trusted hop', { 'x-forwarded-host': EVIL }, TRUSTED_HOP],
    ['with X-Forwarded-Host: evil.example from an untrusted peer', { 'x-forwarded-host': EVIL, 'x-forwarded-proto': 'https' }, undefined],
  ])('a proof for evil.example/token %s → 400 invalid_dpop_proof, recorded', async (_label, headers, localAddress) => {
    const response = await secretRequest({ localAddress, headers: { ...headers, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: 'invalid_dpop_proof', error_description: 'DPoP proof htu mismatch' });
    expect(await rejectionOf(tether, response)).toMatchObject({ client_id: 'dpop-client', details: { error: 'invalid_dpop_proof' } });
  });

  test('on the plain HTTP listener, from the trusted hop saying X-Forwarded-Proto: https, htu is the issuer\'s URL → a token', async () => {
    const response = await secretRequest({ connectTo: httpListener, localAddress: TRUSTED_HOP, headers: { 'x-forwarded-proto': 'https', dpop: await proofFor(tether.tokenEndpoint) } });
    expect(response.status).toBe(200);
  });

  test('the same from an untrusted peer: X-Forwarded-Proto is not believed, so http://<issuer host> is not served → 421', async () => {
    const response = await secretRequest({ connectTo: httpListener, headers: { 'x-forwarded-proto': 'https', dpop: await proofFor(tether.tokenEndpoint) } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
  });

  test('X-Forwarded-Proto twice, or not http/https, from the trusted hop → 400 invalid_request', async () => {
    for (const proto of [['https', 'http'], 'https, http', 'ftp']) {
      const response = await secretRequest({ connectTo: httpListener, localAddress: TRUSTED_HOP, headers: { 'x-forwarded-proto': proto as string, dpop: await proofFor(tether.tokenEndpoint) } });
      expect(response.status).toBe(400);
      expect(response.body).toEqual({ error: 'invalid_request', error_description: 'malformed X-Forwarded-Proto header' });
    }
  });
});

describe('discovery advertises only configured URLs (RFC 8414 §3.3)', () => {
  const discovery = (extra: Partial<RawRequest> & { headers?: Record<string, string | string[]> }) => send({ target: '/.well-known/oauth-authorization-server', method: 'GET', ...extra });
  const expectIssuerUrls = (metadata: Record<string, unknown>) => {
    expect(metadata.issuer).toBe(tether.issuer);
    const urls = Object.entries(metadata).filter(([, value]) => typeof value === 'string' && /^https?:/.test(value));
    expect(urls.length).toBeGreaterThan(3);
    for (const [, url] of urls) expect(new URL(url as string).origin).toBe(tether.issuer);
    expect(metadata.token_endpoint).toBe(tether.tokenEndpoint);
    expect(metadata.mtls_endpoint_aliases).toEqual({
      token_endpoint: tether.tokenEndpoint, introspection_endpoint: tether.introspectionEndpoint, revocation_endpoint: tether.revocationEndpoint,
    });
  };

  test('Host: evil.example → 421', async () => {
    const response = await discovery({ headers: { host: EVIL } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
  });

  test.each<[string, () => Record<string, string>, string | undefined]>([
    ['X-Forwarded-Host: evil.example from an untrusted peer', () => ({ 'x-forwarded-host': EVIL, 'x-forwarded-proto': 'http' }), undefined],
    ['X-Forwarded-Host: evil.example from the trusted hop', () => ({ 'x-forwarded-host': EVIL }), TRUSTED_HOP],
    ['Forwarded: host=evil.example from the trusted hop', () => ({ forwarded: `host=${EVIL};proto=https` }), TRUSTED_HOP],
    ['the HTTPS listener\'s own address as Host (127.0.0.1:<port>)', () => ({ host: new URL(httpsListener).host }), undefined],
  ])('%s → the issuer\'s URLs', async (_label, headers, localAddress) => {
    const response = await discovery({ localAddress, headers: headers() });
    expect(response.status).toBe(200);
    expectIssuerUrls(response.body);
  });

  test('on the plain HTTP listener → the issuer\'s URLs, not http:// ones', async () => {
    const response = await discovery({ connectTo: httpListener, headers: { host: new URL(httpListener).host } });
    expect(response.status).toBe(200);
    expectIssuerUrls(response.body);
  });

  test.each([
    ['two Host headers', { host: [issuerHost, EVIL] }],
    ['a Host with a path', { host: `${EVIL}/x` }],
    ['a Host with userinfo', { host: `user@${issuerHost}` }],
    ['a Host with a space', { host: 'local host' }],
    ['an empty Host', { host: '' }],
  ])('%s → 400 invalid_request', async (_label, headers) => {
    const response = await discovery({ headers });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_request');
  });

  test('any Host header is a 4xx or the issuer\'s metadata, never a 5xx (bounded property run)', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ unit: fc.constantFrom(...'abcXYZ019.-:[]@/%_ '.split('')), maxLength: 40 }), async (host) => {
      const response = await discovery({ headers: { host } });
      expect([200, 400, 421]).toContain(response.status);
      if (response.status === 200) expectIssuerUrls(response.body);
    }), { numRuns: 60 });
  });

  test('health and readiness answer whatever the Host (load balancers probe by address)', async () => {
    const response = await send({ target: '/healthz', method: 'GET', headers: { host: EVIL } });
    expect(response.status).toBe(200);
  });

  test.each([
    ['the HTTPS listener', () => tether.origin],
    ['the plain HTTP listener', () => httpListener],
  ])('oauth4webapi discovers the issuer through %s (its issuer check passes)', async (_label, listener) => {
    const issuer = new URL(tether.issuer);
    const dispatcher = tether.dispatcherFor();
    const toListener = (url: string, options: object) => fetch(new URL(new URL(url).pathname, listener()), { ...options, dispatcher });
    const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.customFetch]: toListener as never, [oauth.allowInsecureRequests]: true });
    const metadata = await oauth.processDiscoveryResponse(issuer, response);
    expect(metadata.issuer).toBe(tether.issuer);
    expect(metadata.token_endpoint).toBe(tether.tokenEndpoint);
  });
});

describe('client secrets only over TLS (RFC 6749 §2.3.1)', () => {
  const overHttp = (extra: Partial<RawRequest> & { headers?: Record<string, string> }) => send({ connectTo: httpListener, ...extra, headers: { host: new URL(httpListener).host, ...extra.headers } });

  test.each([
    ['client_secret_basic', { grant_type: 'client_credentials', resource: ORDERS }, { authorization: basicAuth('dpop-client', DPOP_SECRET) }, 'dpop-client'],
    ['client_secret_basic with a wrong secret (refused before it is compared)', { grant_type: 'client_credentials', resource: ORDERS }, { authorization: basicAuth('dpop-client', 'wrong-secret-wrong-secret') }, 'dpop-client'],
    ['client_secret_post', { grant_type: 'client_credentials', resource: LEGACY, client_id: 'legacy-client', client_secret: LEGACY_SECRET }, {}, 'legacy-client'],
  ])('%s on the plain HTTP listener → 400 invalid_request saying TLS is required, recorded, no token', async (_label, form, headers, clientId) => {
    const before = await tether.database.knex('issued_tokens').count<{ count: string }[]>('* as count');
    const response = await overHttp({ form, headers: { ...headers, dpop: await proofFor(`${httpListener}/token`) } });
    expect(response.status).toBe(400);
    expect(response.body).toEqual(tlsRequired);
    expect(await rejectionOf(tether, response)).toMatchObject({
      client_id: clientId,
      details: { route: 'token', status: 400, error: 'invalid_request', reason: 'client secret sent over plain HTTP' },
    });
    expect(await tether.database.knex('issued_tokens').count<{ count: string }[]>('* as count')).toEqual(before);
  });

  test.each([
    ['introspection', '/token/introspection', 'introspection'],
    ['revocation', '/token/revocation', 'revocation'],
  ])('%s with client_secret_basic over plain HTTP → 400, recorded', async (_label, target, route) => {
    const response = await overHttp({ target, form: { token: 'whatever' }, headers: { authorization: basicAuth('dpop-client', DPOP_SECRET) } });
    expect(response.status).toBe(400);
    expect(response.body).toEqual(tlsRequired);
    expect(await rejectionOf(tether, response)).toMatchObject({ details: { route, reason: 'client secret sent over plain HTTP' } });
  });

  test('the trusted hop saying X-Forwarded-Proto: http is plain HTTP too → 400', async () => {
    const response = await overHttp({
      localAddress: TRUSTED_HOP,
      form: { grant_type: 'client_credentials', resource: ORDERS },
      headers: { 'x-forwarded-proto': 'http', authorization: basicAuth('dpop-client', DPOP_SECRET), dpop: await proofFor(`${httpListener}/token`) },
    });
    expect(response.status).toBe(400);
    expect(response.body).toEqual(tlsRequired);
  });

  test('private_key_jwt needs no password: it works on the plain HTTP listener (htu = that listener\'s URL)', async () => {
    const response = await overHttp({ form: assertionForm(await jwtClient.assertion(tether.issuer)), headers: { dpop: await proofFor(`${httpListener}/token`) } });
    expect(response.status).toBe(200);
  });

  test('a development config that opts in (listeners.http.allowClientSecrets) accepts them there', async () => {
    const permissive = await startTestTether({ config: testConfig(), http: { allowClientSecrets: true } });
    try {
      const response = await rawRequest({
        connectTo: permissive.httpOrigin!, target: '/token', form: { grant_type: 'client_credentials', resource: ORDERS },
        headers: { host: new URL(permissive.httpOrigin!).host, authorization: basicAuth('dpop-client', DPOP_SECRET), dpop: await proofFor(`${permissive.httpOrigin}/token`) },
      });
      expect(response.status).toBe(200);
    } finally {
      await permissive.close();
    }
  });
});

describe('the client address in the ledger', () => {
  const refused = (localAddress: string | undefined, forwardedFor: string) => send({
    connectTo: httpListener, localAddress,
    form: { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS },
    headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': forwardedFor },
  });

  test('X-Forwarded-For from an untrusted peer is ignored: the peer\'s address is recorded', async () => {
    const response = await send({ form: { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS }, headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(response.status).toBe(401);
    expect((await rejectionOf(tether, response)).source_address).toBe('127.0.0.1');
  });

  test('from the trusted hop, the right-most address that is not a trusted proxy is recorded', async () => {
    const response = await refused(TRUSTED_HOP, `198.51.100.7, 203.0.113.9, ${TRUSTED_HOP}`);
    expect(response.status).toBe(401);
    expect((await rejectionOf(tether, response)).source_address).toBe('203.0.113.9');
  });

  test('from the trusted hop, a malformed entry ends the walk at the last good one', async () => {
    const response = await refused(TRUSTED_HOP, 'not-an-address');
    expect((await rejectionOf(tether, response)).source_address).toBe(TRUSTED_HOP);
  });
});

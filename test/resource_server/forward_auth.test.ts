// The forward-auth handler on a real loopback server, asked as a gateway asks it: trusted peers
// only, the original request from the gateway's headers, routes with default deny, the binding to a
// forwarded certificate or a DPoP proof of the original method and public URL.
import { X509Certificate } from 'node:crypto';
import { createForwardAuthHandler, startForwardAuthServer, type ForwardAuthDecision, type RunningForwardAuthServer } from '../../src/resource_server/index.js';
import { rawRequest } from '../support/raw_request.js';
import { AUDIENCE, jwksOf, makeCertificates, makeDpopKey, makeProof, makeSigningKey, mintAccessToken, type CertificateFiles, type DpopKey, type SigningKey } from './helpers.js';

const ISSUER = 'https://issuer.test';
const PUBLIC = 'https://api.example';
const GATEWAY = '127.0.0.2';
const STRANGER = '127.0.0.3';

let key: SigningKey;
let dpopKey: DpopKey;
let certificates: Record<string, CertificateFiles>;
const decisions: ForwardAuthDecision[] = [];
const servers: Record<string, RunningForwardAuthServer> = {};

const routes = [
  { method: ['GET', 'HEAD'], path: '/orders', scopes: ['orders:read'] },
  { method: 'POST', path: '/orders', scopes: ['orders:write'] },
  { method: 'GET', path: '/orders/*', scopes: ['orders:read'] },
  { method: 'GET', path: '/public/**', scopes: [] },
];

beforeAll(async () => {
  key = await makeSigningKey();
  dpopKey = await makeDpopKey();
  certificates = makeCertificates(['client', 'other']);
  const common = {
    issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), publicBaseUrl: PUBLIC, routes, trustedGateways: [GATEWAY],
    clientCertificateHeader: 'x-ssl-client-cert' as const, onDecision: (decision: ForwardAuthDecision) => decisions.push(decision),
  };
  servers.nginx = await startForwardAuthServer({ ...common, style: 'nginx' });
  servers.forwarded = await startForwardAuthServer({ ...common, style: 'forwarded' });
  servers.envoy = await startForwardAuthServer({ ...common, style: 'envoy', envoyPathPrefix: '/check' });
});

afterAll(async () => {
  await Promise.all(Object.values(servers).map((server) => server.close()));
});

beforeEach(() => {
  decisions.length = 0;
});

const escapedPem = (files: CertificateFiles) => encodeURIComponent(new X509Certificate(files.cert).toString());
const mtlsToken = (claims: Record<string, unknown> = {}) => mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { 'x5t#S256': certificates.client!.thumbprint }, ...claims } });
const dpopToken = () => mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { jkt: dpopKey.jkt } } });

/** A check request as nginx's auth_request subrequest sends it. */
function nginxCheck(headers: Record<string, string | string[]>, from = GATEWAY) {
  return rawRequest({ connectTo: servers.nginx!.url, target: '/_authz', headers: { host: 'authz', ...headers }, localAddress: from });
}

async function certificateBound(target = '/orders', method = 'GET', claims: Record<string, unknown> = {}) {
  return { authorization: `Bearer ${await mtlsToken(claims)}`, 'x-original-method': method, 'x-original-uri': target, 'x-ssl-client-cert': escapedPem(certificates.client!) };
}

describe('a certificate-bound token, nginx convention', () => {
  test('accepted: 200 with the identity headers, nothing else', async () => {
    const response = await nginxCheck(await certificateBound('/orders?status=open', 'GET', { client_id: 'worker', sub: 'worker', jti: 'token-1' }));
    expect(response.status).toBe(200);
    expect(response.headers).toMatchObject({
      'x-tether-client-id': 'worker', 'x-tether-subject': 'worker', 'x-tether-scope': 'orders:read orders:write', 'x-tether-token-id': 'token-1', 'x-tether-binding': 'mtls',
    });
    expect(response.headers['x-tether-authz']).toBeUndefined();
    expect(decisions).toEqual([expect.objectContaining({ allowed: true, status: 200, peer: GATEWAY, method: 'GET', path: '/orders', clientId: 'worker', tokenId: 'token-1' })]);
  });

  test('another certificate forwarded → 401 invalid_token, the refusal marked', async () => {
    const response = await nginxCheck({ ...(await certificateBound()), 'x-ssl-client-cert': escapedPem(certificates.other!) });
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="https:\/\/api\.test\/orders", error="invalid_token", error_description="client certificate is not the one the token is bound to", DPoP realm=/);
    expect(response.headers['x-tether-authz']).toBe('refused');
    expect(decisions[0]).toMatchObject({ allowed: false, code: 'ERR_CERTIFICATE_MISMATCH' });
  });

  test('no certificate forwarded → 401 invalid_token', async () => {
    const { 'x-ssl-client-cert': _certificate, ...headers } = await certificateBound();
    const response = await nginxCheck(headers);
    expect(response.status).toBe(401);
    expect(decisions[0]).toMatchObject({ code: 'ERR_CERTIFICATE_MISSING' });
  });

  test('the route\'s scope: POST /orders needs orders:write → 403 insufficient_scope with scope=', async () => {
    const response = await nginxCheck(await certificateBound('/orders', 'POST', { scope: 'orders:read' }));
    expect(response.status).toBe(403);
    expect(response.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(response.headers['www-authenticate']).toContain('scope="orders:write"');
  });

  test('wrong audience and expired → 401 invalid_token', async () => {
    for (const claims of [{ aud: 'https://other.example' }, { exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 900 }]) {
      const response = await nginxCheck(await certificateBound('/orders', 'GET', claims));
      expect(response.status).toBe(401);
      expect(response.headers['www-authenticate']).toContain('error="invalid_token"');
    }
    expect(decisions.map((decision) => decision.code)).toEqual(['ERR_TOKEN_AUDIENCE', 'ERR_TOKEN_EXPIRED']);
  });

  test('no token → 401 with challenges and no error code (RFC 6750 §3.1)', async () => {
    const response = await nginxCheck({ 'x-original-method': 'GET', 'x-original-uri': '/orders' });
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="https://api.test/orders", DPoP realm="https://api.test/orders", algs="ES256 PS256 EdDSA Ed25519"');
  });
});

describe('identity headers', () => {
  test('a claim that could end a header line is percent-encoded, never passed raw', async () => {
    const response = await nginxCheck(await certificateBound('/orders', 'GET', { client_id: 'a\r\nx-evil: 1', sub: 'ü%' }));
    expect(response.status).toBe(200);
    expect(response.headers['x-tether-client-id']).toBe('a%0D%0Ax-evil: 1');
    expect(response.headers['x-tether-subject']).toBe('%C3%BC%25');
    expect(response.headers['x-evil']).toBeUndefined();
  });
});

describe('default deny and the route table', () => {
  test.each([
    ['DELETE', '/orders'],
    ['GET', '/admin'],
    ['GET', '/orders/1/items'],
    ['GET', '/public'],
    ['get', '/orders'],
  ])('%s %s matches no route → 403 access_denied, the token is not even looked at', async (method, target) => {
    const response = await nginxCheck(await certificateBound(target, method));
    expect(response.status).toBe(403);
    expect(response.body).toEqual({ error: 'access_denied', error_description: 'no route of this API allows this request' });
    expect(decisions[0]).toMatchObject({ allowed: false, code: 'ERR_NO_ROUTE' });
  });

  test('* is one segment, ** the rest; an encoded unreserved character is the character (/%6Frders = /orders); a query as clients send it', async () => {
    for (const target of ['/orders/42', '/public/a/b/c.txt', '/%6Frders', '/orders?ids[]=1&f={"a":1}&q=%zz']) {
      expect((await nginxCheck(await certificateBound(target))).status).toBe(200);
    }
  });
});

describe('path tricks: a path that would need normalization is refused, never matched', () => {
  test.each([
    ['/public/../orders', 'dot segments'],
    ['/public/%2e%2e/admin', 'dot segments'],
    ['/public/%2E%2E/admin', 'dot segments'],
    ['/public/./a', 'dot segments'],
    ['/public/a%2Fb', 'an encoded slash'],
    ['/public/a%5cb', 'an encoded slash'],
    ['/public/a%00', 'an encoded slash'],
    ['/public//a', 'an empty segment'],
    ['//orders', 'an empty segment'],
    ['/public/a\\..\\admin', 'characters'],
    ['/public/%zz', 'malformed percent-encoding'],
    ['/public/a#frag', 'characters'],
    ['https://api.example/orders', 'not an absolute path'],
    ['*', 'not an absolute path'],
  ])('%s → 400 invalid_request (%s)', async (target, reason) => {
    const response = await nginxCheck(await certificateBound(target));
    expect(response.status).toBe(400);
    expect(response.headers['www-authenticate']).toContain('error="invalid_request"');
    expect(response.headers['www-authenticate']).toContain(reason);
  });

  test('/public/../admin is not /public: refused with 400, though /public/** needs no scope', async () => {
    const response = await nginxCheck({ ...(await certificateBound('/public/../admin')) });
    expect(response.status).toBe(400);
    expect(decisions[0]).toMatchObject({ allowed: false, code: 'ERR_REQUEST_INVALID' });
  });

  test('a target longer than 8192 characters → 400', async () => {
    const response = await nginxCheck(await certificateBound(`/public/${'a'.repeat(8200)}`));
    expect(response.status).toBe(400);
    expect(response.headers['www-authenticate']).toContain('too long');
  });
});

describe('the gateway\'s headers', () => {
  test.each([
    ['x-original-uri twice', { 'x-original-uri': ['/orders', '/admin'] }, 'x-original-uri was sent more than once'],
    ['x-original-method twice', { 'x-original-method': ['GET', 'GET'] }, 'x-original-method was sent more than once'],
    ['no x-original-uri', { 'x-original-uri': undefined }, 'the gateway did not send x-original-uri'],
    ['no x-original-method', { 'x-original-method': undefined }, 'the gateway did not send x-original-method'],
    ['a method that is no token', { 'x-original-method': 'G ET' }, 'the original request method is not an HTTP method'],
    ['x-ssl-client-cert twice', { 'x-ssl-client-cert': ['a', 'b'] }, 'x-ssl-client-cert header is malformed'],
  ])('%s → 400 invalid_request', async (_label, change, description) => {
    const headers: Record<string, string | string[] | undefined> = { ...(await certificateBound()), ...change };
    const response = await nginxCheck(Object.fromEntries(Object.entries(headers).filter(([, value]) => value !== undefined)) as Record<string, string | string[]>);
    expect(response.status).toBe(400);
    expect(response.headers['www-authenticate']).toContain(`error_description="${description}"`);
  });

  test('two Authorization headers → 400 invalid_request', async () => {
    const headers = await certificateBound();
    const response = await nginxCheck({ ...headers, authorization: [headers.authorization, headers.authorization] });
    expect(response.status).toBe(400);
  });

  test('from a peer that is not a gateway: 403 whatever it sends, even a perfect request', async () => {
    const response = await nginxCheck(await certificateBound(), STRANGER);
    expect(response.status).toBe(403);
    expect(response.body).toEqual({ error: 'access_denied', error_description: 'this forward-auth endpoint answers its configured gateways only' });
    expect(response.headers['x-tether-client-id']).toBeUndefined();
    expect(decisions[0]).toMatchObject({ allowed: false, code: 'ERR_UNTRUSTED_PEER', peer: STRANGER });
  });

  test('a request head larger than 16 KiB → 431 from Node, never a decision', async () => {
    const response = await nginxCheck({ ...(await certificateBound()), 'x-padding': 'a'.repeat(17_000) });
    expect(response.status).toBe(431);
    expect(decisions).toEqual([]);
  });
});

describe('DPoP: the proof must name the original method and the public URL', () => {
  async function dpopCheck(proof: { htm: string; htu: string }, original = { method: 'GET', uri: '/orders?status=open' }, extra: Record<string, string> = {}) {
    const token = await dpopToken();
    return nginxCheck({
      authorization: `DPoP ${token}`, dpop: await makeProof(dpopKey, { ...proof, accessToken: token }),
      'x-original-method': original.method, 'x-original-uri': original.uri, ...extra,
    });
  }

  test('htm GET, htu the public base URL + path → 200 (binding dpop)', async () => {
    const response = await dpopCheck({ htm: 'GET', htu: `${PUBLIC}/orders` });
    expect(response.status).toBe(200);
    expect(response.headers['x-tether-binding']).toBe('dpop');
  });

  test.each([
    ['another method', { htm: 'POST', htu: `${PUBLIC}/orders` }],
    ['another path', { htm: 'GET', htu: `${PUBLIC}/orders/1` }],
    ['the forward-auth server\'s own URL', { htm: 'GET', htu: 'http://authz/_authz' }],
    ['the host the client claims in X-Forwarded-Host', { htm: 'GET', htu: 'https://evil.example/orders' }],
  ])('a proof for %s → 401 invalid_dpop_proof', async (_label, proof) => {
    const response = await dpopCheck(proof, undefined, { 'x-forwarded-host': 'evil.example', host: 'evil.example' });
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^DPoP realm="[^"]+", error="invalid_dpop_proof"/);
  });

  test('the check request\'s own method does not count: a GET check for an original POST needs htm POST', async () => {
    const token = await dpopToken();
    const proof = await makeProof(dpopKey, { htm: 'POST', htu: `${PUBLIC}/orders`, accessToken: token });
    const response = await rawRequest({ connectTo: servers.nginx!.url, target: '/_authz', method: 'GET', localAddress: GATEWAY, headers: { host: 'authz', authorization: `DPoP ${token}`, dpop: proof, 'x-original-method': 'POST', 'x-original-uri': '/orders' } });
    // The scope for POST /orders is orders:write, which the token has.
    expect(response.status).toBe(200);
  });
});

describe('the other conventions', () => {
  test('Traefik/Caddy: X-Forwarded-Method and X-Forwarded-Uri; X-Forwarded-Host never read', async () => {
    const token = await dpopToken();
    const headers = {
      host: 'authz', authorization: `DPoP ${token}`, dpop: await makeProof(dpopKey, { htm: 'DELETE', htu: `${PUBLIC}/orders`, accessToken: token }),
      'x-forwarded-method': 'POST', 'x-forwarded-uri': '/orders', 'x-forwarded-host': 'api.example', 'x-forwarded-proto': 'https',
    };
    const wrongMethod = await rawRequest({ connectTo: servers.forwarded!.url, target: '/', headers, localAddress: GATEWAY });
    expect(wrongMethod.status).toBe(401);
    const proof = await makeProof(dpopKey, { htm: 'POST', htu: `${PUBLIC}/orders`, accessToken: token });
    const right = await rawRequest({ connectTo: servers.forwarded!.url, target: '/', headers: { ...headers, dpop: proof }, localAddress: GATEWAY });
    expect(right.status).toBe(200);
    // nginx's headers mean nothing to a server configured for the X-Forwarded-* convention.
    const nginxStyle = await rawRequest({ connectTo: servers.forwarded!.url, target: '/', headers: { host: 'authz', authorization: `DPoP ${token}`, 'x-original-method': 'GET', 'x-original-uri': '/orders' }, localAddress: GATEWAY });
    expect(nginxStyle.status).toBe(400);
  });

  test('Traefik/Caddy: X-Forwarded-Uri or X-Forwarded-Method twice, or missing → 400', async () => {
    const token = await dpopToken();
    const base = { host: 'authz', authorization: `DPoP ${token}`, 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/orders' };
    for (const [change, description] of [
      [{ 'x-forwarded-uri': ['/orders', '/admin'] }, 'x-forwarded-uri was sent more than once'],
      [{ 'x-forwarded-method': ['GET', 'DELETE'] }, 'x-forwarded-method was sent more than once'],
      [{ 'x-forwarded-uri': [] }, 'the gateway did not send x-forwarded-uri'],
    ] as const) {
      const headers = Object.fromEntries(Object.entries({ ...base, ...change }).filter(([, value]) => !(Array.isArray(value) && value.length === 0))) as Record<string, string | string[]>;
      const response = await rawRequest({ connectTo: servers.forwarded!.url, target: '/', headers, localAddress: GATEWAY });
      expect(response.status).toBe(400);
      expect(response.headers['www-authenticate']).toContain(`error_description="${description}"`);
    }
  });

  test('Envoy: the original method and path behind path_prefix', async () => {
    const ok = await rawRequest({ connectTo: servers.envoy!.url, target: '/check/orders/7?x=1', method: 'GET', headers: { host: 'authz', ...(await certificateBound()) }, localAddress: GATEWAY });
    expect(ok.status).toBe(200);
    const refused = await rawRequest({ connectTo: servers.envoy!.url, target: '/check/orders', method: 'DELETE', headers: { host: 'authz', ...(await certificateBound()) }, localAddress: GATEWAY });
    expect(refused.status).toBe(403);
    const outside = await rawRequest({ connectTo: servers.envoy!.url, target: '/orders', method: 'GET', headers: { host: 'authz', ...(await certificateBound()) }, localAddress: GATEWAY });
    expect(outside.status).toBe(400);
    const tricked = await rawRequest({ connectTo: servers.envoy!.url, target: '/check/public/../orders', method: 'GET', headers: { host: 'authz', ...(await certificateBound()) }, localAddress: GATEWAY });
    expect(tricked.status).toBe(400);
  });
});

describe('configuration', () => {
  const base = { issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [] }, publicBaseUrl: PUBLIC, routes, trustedGateways: [GATEWAY], style: 'nginx' as const };
  test.each([
    [{ routes: [] }, 'routes must be a non-empty array'],
    [{ routes: [{ method: 'GET', path: '/a/**/b', scopes: [] }] }, 'routes[0].path: "**" may only be the last segment'],
    [{ routes: [{ method: 'GET', path: '/a%2Fb', scopes: [] }] }, 'routes[0].path: segments hold'],
    [{ routes: [{ method: 'GE T', path: '/a', scopes: [] }] }, 'routes[0].method "GE T" is not an HTTP method'],
    [{ trustedGateways: [] }, 'trustedGateways must list'],
    [{ trustedGateways: ['gateway.local'] }, 'trustedProxies[0] "gateway.local" is not an IP address or CIDR block'],
    [{ publicBaseUrl: 'https://api.example/?a=1' }, 'publicBaseUrl must be an origin'],
    [{ style: 'apache' }, 'style must be one of nginx, forwarded, envoy'],
  ])('%j → TypeError', (change, message) => {
    expect(() => createForwardAuthHandler({ ...base, ...change } as never)).toThrow(message);
  });
});

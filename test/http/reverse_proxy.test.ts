import { decodeJwt } from 'jose';
import * as oauth from 'oauth4webapi';
import { Agent, fetch } from 'undici';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, ORDERS, testConfig } from '../support/config.js';
import { assertingClient, assertionForm, EVIL_TOKEN_ENDPOINT, ledgerEventsOf, rejectionOf, type AssertingClient } from '../support/hostile_requests.js';
import { freePort, startNginx, type RunningNginx } from '../support/nginx.js';
import { rawRequest, type RawRequest } from '../support/raw_request.js';
import { basicAuth, startTestTether } from '../support/tether.js';

/**
 * Tether behind a real nginx, configured as docs/configuration.md ("Behind a reverse proxy") says:
 * nginx terminates TLS, asks for a client certificate (`ssl_verify_client optional_no_ca`: Tether
 * checks the chain itself), forwards it in `X-SSL-Client-Cert`, and sets — so overwrites whatever a
 * client sent — Host, X-Forwarded-Proto and X-Forwarded-For, and clears X-Forwarded-Host, Forwarded
 * and Client-Cert. Tether trusts only nginx's address.
 *
 * On loopback the addresses tell the hops apart: clients reach nginx from 127.0.0.3, nginx reaches
 * Tether from 127.0.0.2 (`proxy_bind`, the one trusted proxy), and the requests "around" nginx reach
 * Tether's listeners directly from 127.0.0.1, an untrusted peer.
 */

const NGINX_HOP = '127.0.0.2';
const CLIENT_ADDRESS = '127.0.0.3';
const EVIL = 'evil.example';

let tether: RunningTether;
let nginx: RunningNginx;
let jwtClient: AssertingClient;
/** https://localhost:<nginx port>: the issuer, which only nginx serves. */
let issuer: string;
let nginxAddress: string;

/** The `server` block of docs/configuration.md, with the test's ports and files. */
function nginxServer(directory: string, listenPort: number, upstream: string): string {
  return `
  upstream tether {
    server ${upstream};
    keepalive 8;
  }
  server {
    listen 127.0.0.1:${listenPort} ssl;
    server_name localhost;
    ssl_certificate ${directory}/server.pem;
    ssl_certificate_key ${directory}/server.key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    # Ask for a client certificate; Tether checks its chain (tls_client_auth) or its key (self-signed).
    ssl_verify_client optional_no_ca;

    location / {
      proxy_pass http://tether;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # The address Tether lists in trustedProxies (in the test: one of several loopback addresses).
      proxy_bind ${NGINX_HOP};
      # Set, so whatever a client sent under these names never reaches Tether:
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
      # Cleared (an empty value removes the header):
      proxy_set_header X-Forwarded-Host "";
      proxy_set_header Forwarded "";
      proxy_set_header Client-Cert "";
    }
  }`;
}

beforeAll(async () => {
  jwtClient = await assertingClient();
  const nginxPort = await freePort();
  issuer = `https://localhost:${nginxPort}`;
  nginxAddress = `https://127.0.0.1:${nginxPort}`;
  tether = await startTestTether({
    config: { ...testConfig({ clients: [jwtClient.config] }), trustedProxies: [NGINX_HOP], clientCertHeader: 'x-ssl-client-cert' },
    issuer,
    http: true,
  });
  nginx = await startNginx({
    files: { 'server.pem': tether.pki.server.certificatePem, 'server.key.pem': tether.pki.server.privateKeyPem },
    http: (directory) => nginxServer(directory, nginxPort, new URL(tether.httpOrigin!).host),
    waitForPorts: [nginxPort],
  });
});

afterAll(async () => {
  await nginx?.stop();
  await tether?.close();
});

/** A request through nginx, from the client address, addressed to the issuer. */
function throughNginx(request: Partial<RawRequest> & { headers?: Record<string, string> }) {
  return rawRequest({
    connectTo: nginxAddress, target: '/token', ca: tether.pki.ca.certificatePem, localAddress: CLIENT_ADDRESS,
    ...request,
    headers: { host: new URL(issuer).host, ...request.headers },
  });
}

/** A request straight to Tether's plain HTTP listener from an untrusted peer. */
function aroundNginx(request: Partial<RawRequest> & { headers?: Record<string, string> }) {
  return rawRequest({
    connectTo: tether.httpOrigin!, target: '/token',
    ...request,
    headers: { host: new URL(tether.httpOrigin!).host, ...request.headers },
  });
}

const proofFor = async (htu: string) => dpopProof(await createDpopKey(), { htm: 'POST', htu });
const secretForm = { grant_type: 'client_credentials', resource: ORDERS };
const refusedHost = { error: 'invalid_request', error_description: 'this server does not serve the requested host' };
const certificateOf = (clientId: string) => tether.pki.clients[clientId]!;

describe('through nginx', () => {
  test('a tls_client_auth client: nginx forwards its certificate, the token is bound to it; the client address is recorded', async () => {
    const response = await throughNginx({ form: { ...secretForm, client_id: 'mtls-client' }, certificate: certificateOf('mtls-client'), headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string)).toMatchObject({ iss: issuer, cnf: { 'x5t#S256': certificateOf('mtls-client').thumbprint } });
    const [issued] = await ledgerEventsOf(tether, response);
    // nginx overwrote the client's X-Forwarded-For with the address it saw.
    expect(issued).toMatchObject({ type: 'token.issued', client_id: 'mtls-client', source_address: CLIENT_ADDRESS });
  });

  test('a client_secret_basic DPoP client over nginx\'s TLS, htu = the issuer\'s token endpoint → a token', async () => {
    const response = await throughNginx({ form: secretForm, headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), 'x-forwarded-proto': 'http', dpop: await proofFor(`${issuer}/token`) } });
    expect(response.status).toBe(200);
  });

  test('an assertion for evil.example/token replayed with Host: evil.example → 421, recorded', async () => {
    const response = await throughNginx({ form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)), headers: { host: EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
    expect(await rejectionOf(tether, response)).toMatchObject({ source_address: CLIENT_ADDRESS, details: { route: 'token', status: 421 } });
  });

  test('the same assertion with X-Forwarded-Host: evil.example (cleared by nginx, never read by Tether) → 401 invalid_client', async () => {
    const response = await throughNginx({ form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)), headers: { 'x-forwarded-host': EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(401);
    expect(response.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(await rejectionOf(tether, response)).toMatchObject({ client_id: 'jwt-client', details: { error: 'invalid_client' } });
  });

  test('an assertion whose aud is the issuer → a token (iss of the token: the issuer)', async () => {
    const response = await throughNginx({ form: assertionForm(await jwtClient.assertion(issuer)), headers: { dpop: await proofFor(`${issuer}/token`) } });
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string).iss).toBe(issuer);
  });

  test.each([
    ['Host: evil.example', 421, 'invalid_request', { host: EVIL }],
    ['X-Forwarded-Host: evil.example', 400, 'invalid_dpop_proof', { 'x-forwarded-host': EVIL }],
    ['the issuer\'s Host', 400, 'invalid_dpop_proof', {}],
  ])('a DPoP proof for evil.example/token with %s → %i %s', async (_label, status, error, headers) => {
    const response = await throughNginx({ form: secretForm, headers: { ...headers, authorization: basicAuth('dpop-client', DPOP_SECRET), dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(status);
    expect(response.body.error).toBe(error);
    expect(await rejectionOf(tether, response)).toMatchObject({ details: { status, error } });
  });

  test('discovery with Host: evil.example → 421; with X-Forwarded-Host: evil.example → the issuer\'s URLs', async () => {
    const hostile = await throughNginx({ target: '/.well-known/oauth-authorization-server', method: 'GET', headers: { host: EVIL } });
    expect(hostile.status).toBe(421);
    const forwarded = await throughNginx({ target: '/.well-known/oauth-authorization-server', method: 'GET', headers: { 'x-forwarded-host': EVIL } });
    expect(forwarded.status).toBe(200);
    expect(forwarded.body).toMatchObject({ issuer, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks` });
  });

  test('a client-sent X-SSL-Client-Cert is overwritten by nginx: without a TLS certificate, the mTLS client is refused', async () => {
    const forged = encodeURIComponent(certificateOf('mtls-client').certificatePem);
    const response = await throughNginx({ form: { ...secretForm, client_id: 'mtls-client' }, headers: { 'x-ssl-client-cert': forged } });
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('invalid_client');
  });

  test('oauth4webapi discovers the issuer through nginx', async () => {
    const dispatcher = new Agent({ connect: { ca: tether.pki.ca.certificatePem } });
    try {
      const url = new URL(issuer);
      const response = await oauth.discoveryRequest(url, { algorithm: 'oauth2', [oauth.customFetch]: ((input: string, init: object) => fetch(input, { ...init, dispatcher })) as never });
      const metadata = await oauth.processDiscoveryResponse(url, response);
      expect(metadata).toMatchObject({ issuer, token_endpoint: `${issuer}/token`, mtls_endpoint_aliases: { token_endpoint: `${issuer}/token` } });
    } finally {
      await dispatcher.close();
    }
  });
});

describe('around nginx: straight to Tether from an untrusted peer', () => {
  test('a forged X-SSL-Client-Cert of the mTLS client is ignored → 401 invalid_client', async () => {
    const response = await aroundNginx({ form: { ...secretForm, client_id: 'mtls-client' }, headers: { host: new URL(issuer).host, 'x-forwarded-proto': 'https', 'x-ssl-client-cert': encodeURIComponent(certificateOf('mtls-client').certificatePem) } });
    // X-Forwarded-Proto is not believed either: http://<issuer host> is not an origin Tether serves.
    expect(response.status).toBe(421);
    const own = await aroundNginx({ form: { ...secretForm, client_id: 'mtls-client' }, headers: { 'x-ssl-client-cert': encodeURIComponent(certificateOf('mtls-client').certificatePem) } });
    expect(own.status).toBe(401);
    expect(own.body.error).toBe('invalid_client');
  });

  test('a client secret on the plain HTTP listener → 400 invalid_request (TLS required), recorded with the peer\'s address', async () => {
    const response = await aroundNginx({
      form: secretForm,
      headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), 'x-forwarded-for': '203.0.113.9', dpop: await proofFor(`${tether.httpOrigin}/token`) },
    });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: 'invalid_request', error_description: 'client secrets are accepted only over TLS (https); this request was sent over plain HTTP' });
    expect(await rejectionOf(tether, response)).toMatchObject({ client_id: 'dpop-client', source_address: '127.0.0.1', details: { reason: 'client secret sent over plain HTTP' } });
  });

  test('an assertion for evil.example/token with Host: evil.example → 421', async () => {
    const response = await aroundNginx({ form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)), headers: { host: EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(421);
    expect(response.body).toEqual(refusedHost);
  });

  test('X-Forwarded-Host: evil.example on the plain HTTP listener → 401 invalid_client', async () => {
    const response = await aroundNginx({ form: assertionForm(await jwtClient.assertion(EVIL_TOKEN_ENDPOINT)), headers: { 'x-forwarded-host': EVIL, dpop: await proofFor(EVIL_TOKEN_ENDPOINT) } });
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('invalid_client');
  });

  test.each([
    ['the plain HTTP listener', () => tether.httpOrigin!],
    ['the HTTPS listener', () => tether.origin],
  ])('oauth4webapi discovering the issuer through %s gets the issuer\'s URLs', async (_label, listener) => {
    const dispatcher = new Agent({ connect: { ca: tether.pki.ca.certificatePem } });
    try {
      const url = new URL(issuer);
      const toListener = (input: string, init: object) => fetch(new URL(new URL(input).pathname, listener()), { ...init, dispatcher });
      const response = await oauth.discoveryRequest(url, { algorithm: 'oauth2', [oauth.customFetch]: toListener as never, [oauth.allowInsecureRequests]: true });
      const metadata = await oauth.processDiscoveryResponse(url, response);
      expect(metadata).toMatchObject({ issuer, token_endpoint: `${issuer}/token`, introspection_endpoint: `${issuer}/token/introspection` });
    } finally {
      await dispatcher.close();
    }
  });
});

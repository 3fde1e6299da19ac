import { X509Certificate } from 'node:crypto';
import { decodeJwt } from 'jose';
import { fetch } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether } from '../support/tether.js';

const rfc9440 = (pem: string) => `:${new X509Certificate(pem).raw.toString('base64')}:`;

describe('client certificate from a TLS-terminating proxy (RFC 9440 Client-Cert)', () => {
  let trusting: RunningTether;
  let distrusting: RunningTether;

  beforeAll(async () => {
    [trusting, distrusting] = await Promise.all([
      startTestTether({ config: { ...testConfig(), trustedProxies: ['127.0.0.0/8', '::1'] } }),
      startTestTether({ config: { ...testConfig(), trustedProxies: ['10.0.0.0/8'] } }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([trusting?.close(), distrusting?.close()]);
  });

  const viaProxy = (tether: RunningTether, header: string) => postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS,
  }, { dispatcher: tether.dispatcherFor(), headers: { 'client-cert': header } });

  test('from a trusted proxy: the forwarded certificate authenticates and binds', async () => {
    const certificate = trusting.pki.clients['mtls-client']!;
    const { status, body } = await viaProxy(trusting, rfc9440(certificate.certificatePem));
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).cnf).toEqual({ 'x5t#S256': certificate.thumbprint });
  });

  test('from anyone else the header is ignored: no certificate → 401 invalid_client', async () => {
    const { status, body } = await viaProxy(distrusting, rfc9440(distrusting.pki.clients['mtls-client']!.certificatePem));
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  test.each([
    ['not base64', ':not base64!:'],
    ['base64 that is not a certificate', `:${Buffer.from('hello').toString('base64')}:`],
    ['missing the colons', 'MIIB'],
  ])('a malformed header from a trusted proxy (%s) → 400 invalid_request, never a 500 or a binding', async (_label, header) => {
    const { status, body } = await viaProxy(trusting, header);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_request');
  });
});

describe('discovery (RFC 8414)', () => {
  let tether: RunningTether;

  beforeAll(async () => {
    tether = await startTestTether({ config: testConfig() });
  });

  afterAll(async () => {
    await tether?.close();
  });

  test('advertises the methods, bindings and mTLS aliases Tether supports', async () => {
    const response = await fetch(`${tether.issuer}/.well-known/oauth-authorization-server`, { dispatcher: tether.dispatcherFor() });
    expect(response.status).toBe(200);
    const metadata = await response.json() as Record<string, unknown>;
    expect(metadata.issuer).toBe(tether.issuer);
    expect(metadata.token_endpoint).toBe(`${tether.issuer}/token`);
    expect(metadata.jwks_uri).toBe(`${tether.issuer}/jwks`);
    expect(metadata.grant_types_supported).toEqual(expect.arrayContaining(['client_credentials']));
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining([
      'client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth',
    ]));
    // RFC 9864: Ed25519 under its fully specified name as well as EdDSA (issue 12 item 14).
    expect(metadata.token_endpoint_auth_signing_alg_values_supported).toEqual(['ES256', 'PS256', 'EdDSA', 'Ed25519']);
    expect(metadata.dpop_signing_alg_values_supported).toEqual(['ES256', 'PS256', 'EdDSA', 'Ed25519']);
    expect(metadata.tls_client_certificate_bound_access_tokens).toBe(true);
    expect(metadata.resource_indicators_supported).toBe(true);
    expect(metadata.mtls_endpoint_aliases).toMatchObject({ token_endpoint: `${tether.issuer}/token` });
  });

  test('the JWKS publishes public keys only', async () => {
    const response = await fetch(tether.jwksUri, { dispatcher: tether.dispatcherFor() });
    const { keys } = await response.json() as { keys: Record<string, unknown>[] };
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key.d).toBeUndefined();
      expect(key.kid).toEqual(expect.any(String));
    }
  });

  test('health and readiness', async () => {
    const dispatcher = tether.dispatcherFor();
    expect((await fetch(`${tether.issuer}/healthz`, { dispatcher })).status).toBe(200);
    const ready = await fetch(`${tether.issuer}/readyz`, { dispatcher });
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});

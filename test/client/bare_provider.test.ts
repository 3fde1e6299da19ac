// tether-oauth-client against an authorization server that is not Tether: a bare oidc-provider with
// resource indicators, client_credentials, DPoP (nonces required) and mTLS on an aliased listener
// (RFC 8705 §5). Its tokens are checked by Tether's verifier at two APIs.
import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { fetch as undiciFetch } from 'undici';
import { createTokenClient, type FetchFunction, type TokenClient, type TokenClientOptions } from '../../packages/client/src/index.js';
import { createEphemeralPki, issueClientCertificate, type IssuedClientCertificate, type Pki } from '../../src/keys/dev_pki.js';
import { startBareProvider, type BareProvider } from './support/bare_provider.js';
import { startRecordingApi, type RecordingApi } from './support/recording_api.js';

const ORDERS = 'https://orders.bare.test';
const PAYMENTS = 'https://payments.bare.test';
const SECRET = 'bare-provider-secret-0123456789abcdef';

let pki: Pki;
let provider: BareProvider;
let selfSigned: IssuedClientCertificate;
let jwtKey: CryptoKey;
let orders: RecordingApi;
let payments: RecordingApi;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  pki = await createEphemeralPki({ clientNames: ['mtls-worker'] });
  selfSigned = await issueClientCertificate(pki, 'self-signed-worker', { selfSigned: true });
  const jwtPair = await generateKeyPair('ES256');
  jwtKey = jwtPair.privateKey;
  const scope = 'orders:read orders:write payments:charge';
  provider = await startBareProvider({
    tls: pki.server,
    clientCa: pki.ca.certificatePem,
    resources: { [ORDERS]: ['orders:read', 'orders:write'], [PAYMENTS]: ['payments:charge'] },
    requireDpopNonce: true,
    clients: [
      { client_id: 'mtls-worker', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=mtls-worker', tls_client_certificate_bound_access_tokens: true, scope },
      { client_id: 'dpop-cli', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic', dpop_bound_access_tokens: true, scope },
      { client_id: 'post-cli', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post', dpop_bound_access_tokens: true, scope },
      { client_id: 'jwt-cli', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(jwtPair.publicKey)), alg: 'ES256', use: 'sig' }] } as never, dpop_bound_access_tokens: true, scope },
      { client_id: 'self-signed-worker', token_endpoint_auth_method: 'self_signed_tls_client_auth', jwks: { keys: [selfSigned.jwk] } as never, tls_client_certificate_bound_access_tokens: true, scope },
    ],
  });
  const api = (audience: string) => startRecordingApi({ issuer: provider.issuer, audience, jwks: provider.jwks, tls: pki.server, issuerCa: pki.ca.certificatePem });
  [orders, payments] = await Promise.all([api(ORDERS), api(PAYMENTS)]);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await Promise.all([orders?.close(), payments?.close()]);
  await provider?.close();
});

function recordingFetch(): { fetch: FetchFunction; requests: { url: string; status: number }[] } {
  const requests: { url: string; status: number }[] = [];
  return {
    requests,
    fetch: async (input, init) => {
      const response = await undiciFetch(input, init);
      requests.push({ url: input, status: response.status });
      return response;
    },
  };
}

function clientFor(options: Omit<TokenClientOptions, 'issuer' | 'tls'> & { tls?: TokenClientOptions['tls'] }, issuer: Partial<TokenClientOptions> = { issuer: provider.issuer }): TokenClient {
  const client = createTokenClient({ ...issuer, ...options, tls: { ca: pki.ca.certificatePem, ...options.tls } } as TokenClientOptions);
  closers.push(() => client.close());
  return client;
}

const mtlsWorker = (extra: Partial<TokenClientOptions> = {}, issuer?: Partial<TokenClientOptions>) => clientFor({
  clientId: 'mtls-worker', auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
  tls: { cert: pki.clients['mtls-worker']!.certificatePem, key: pki.clients['mtls-worker']!.privateKeyPem }, ...extra,
}, issuer);

describe('discovery and the mTLS endpoint alias (RFC 8414, RFC 8705 §5)', () => {
  test('metadata from RFC 8414 discovery; the token request goes to the alias', async () => {
    const recorded = recordingFetch();
    const client = mtlsWorker({ fetch: recorded.fetch });
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    expect(recorded.requests).toEqual([
      { url: `${provider.issuer}/.well-known/oauth-authorization-server`, status: 200 },
      { url: `${provider.mtlsOrigin}/token`, status: 200 },
    ]);
    expect(token.claims).toMatchObject({ iss: provider.issuer, aud: ORDERS, cnf: { 'x5t#S256': pki.clients['mtls-worker']!.thumbprint } });
  });

  test('without the alias the certificate is not asked for and tls_client_auth fails: invalid_client', async () => {
    const client = mtlsWorker({}, { metadata: { issuer: provider.issuer, token_endpoint: `${provider.issuer}/token` } });
    await expect(client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).rejects.toMatchObject({ status: 401, error: 'invalid_client' });
  });

  test('metadata naming another issuer is refused before anything is sent (RFC 8414 §3.3)', async () => {
    const client = mtlsWorker({}, { issuer: `${provider.issuer}/` });
    await expect(client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).rejects.toMatchObject({ code: 'ERR_DISCOVERY_FAILED' });
  });

  test('certificate-bound tokens for two APIs: each API receives only its own', async () => {
    const client = mtlsWorker();
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'], baseUrl: orders.origin });
    const charge = client.fetchFor({ resource: PAYMENTS, scopes: ['payments:charge'], baseUrl: payments.origin });
    orders.received.length = 0;
    payments.received.length = 0;
    for (let i = 0; i < 2; i += 1) {
      expect((await readOrders(`${orders.origin}/orders`)).status).toBe(200);
      expect((await charge(`${payments.origin}/charges`, { method: 'POST', body: '{}' })).status).toBe(200);
    }
    expect(orders.received.map((request) => request.claims?.aud)).toEqual([ORDERS, ORDERS]);
    expect(payments.received.map((request) => request.claims?.aud)).toEqual([PAYMENTS, PAYMENTS]);
    expect(new Set(orders.received.map((request) => request.token)).size).toBe(1);
  });
});

describe('DPoP with nonces required at the token endpoint (RFC 9449 §8)', () => {
  test('client_secret_basic: one nonce retry, then the nonce is reused; tokens are DPoP-bound', async () => {
    const recorded = recordingFetch();
    const client = clientFor({ clientId: 'dpop-cli', auth: { method: 'client_secret_basic', secret: SECRET }, binding: { method: 'dpop' }, fetch: recorded.fetch });
    const token = await client.getToken({ resource: ORDERS, scopes: ['orders:read'] });
    await client.getToken({ resource: PAYMENTS, scopes: ['payments:charge'] });
    expect(recorded.requests.filter((request) => request.url.endsWith('/token')).map((request) => request.status)).toEqual([400, 200, 200]);
    expect(token).toMatchObject({ type: 'DPoP', claims: { aud: ORDERS, cnf: { jkt: expect.any(String) } } });
    const readOrders = client.fetchFor({ resource: ORDERS, scopes: ['orders:read'] });
    expect((await readOrders(`${orders.origin}/orders`)).status).toBe(200);
    expect((await readOrders(`${orders.origin}/orders`)).status).toBe(200);
  });

  test('client_secret_post and private_key_jwt (aud = the issuer identifier)', async () => {
    const post = clientFor({ clientId: 'post-cli', auth: { method: 'client_secret_post', secret: SECRET }, binding: { method: 'dpop' } });
    const jwt = clientFor({ clientId: 'jwt-cli', auth: { method: 'private_key_jwt', key: jwtKey, alg: 'ES256' }, binding: { method: 'dpop', alg: 'EdDSA' } });
    const [a, b] = await Promise.all([post.getToken({ resource: ORDERS, scopes: ['orders:read'] }), jwt.getToken({ resource: ORDERS, scopes: ['orders:read'] })]);
    expect(a.claims).toMatchObject({ client_id: 'post-cli', aud: ORDERS });
    expect(b.claims).toMatchObject({ client_id: 'jwt-cli', aud: ORDERS });
    // A second assertion for the same client (a new jti) is accepted too.
    jwt.invalidate(b);
    await jwt.getToken({ resource: ORDERS, scopes: ['orders:read'] });
  });

  test('a DPoP algorithm the server does not list is refused up front', async () => {
    const client = clientFor({ clientId: 'dpop-cli', auth: { method: 'client_secret_basic', secret: SECRET }, binding: { method: 'dpop', alg: 'PS256' } });
    await expect(client.getToken({ resource: ORDERS, scopes: ['orders:read'] })).rejects.toMatchObject({ code: 'ERR_DISCOVERY_FAILED' });
  });
});

test('self_signed_tls_client_auth: the self-signed certificate authenticates at the alias and binds the token', async () => {
  const client = clientFor({
    clientId: 'self-signed-worker', auth: { method: 'self_signed_tls_client_auth' }, binding: { method: 'mtls' },
    tls: { cert: selfSigned.certificatePem, key: selfSigned.privateKeyPem },
  });
  const token = await client.getToken({ resource: PAYMENTS, scopes: ['payments:charge'] });
  expect(token.claims).toMatchObject({ client_id: 'self-signed-worker', aud: PAYMENTS, cnf: { 'x5t#S256': selfSigned.thumbprint } });
  expect((await client.fetchFor({ resource: PAYMENTS, scopes: ['payments:charge'] })(`${payments.origin}/charges`)).status).toBe(200);
});

test('a resource the server does not know → TokenEndpointError invalid_target', async () => {
  const client = mtlsWorker();
  await expect(client.getToken({ resource: `${ORDERS}/`, scopes: ['orders:read'] })).rejects.toMatchObject({ error: 'invalid_target' });
});

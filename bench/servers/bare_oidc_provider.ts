/**
 * Baseline of the issuance pair: a bare oidc-provider of the version Tether pins, configured as its
 * documentation shows, issuing the same token as Tether's `orders-worker` client — client_credentials
 * with a resource indicator, JWT (RFC 9068 `at+jwt`) signed ES256, certificate-bound via
 * features.mTLS (client authenticated with tls_client_auth) — over the same TLS transport (Node
 * https, requestCert, keep-alive), with the in-memory adapter and no ledger. A second client,
 * `reporting-cli` (client_secret_basic, DPoP-bound tokens via features.dPoP, proofs replay-checked in
 * the in-memory adapter), is the baseline of DPoP-bound issuance.
 *
 * argv: <port> <server cert PEM file> <server key PEM file> <client CA PEM file>
 * Sends { type: 'ready', port } over IPC once listening; exits on SIGTERM.
 */
import { generateKeyPairSync, type X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

const [port, certFile, keyFile, caFile] = process.argv.slice(2) as [string, string, string, string];
const issuer = `https://localhost:${port}`;
const RESOURCE = 'https://orders.example.test';

const signingKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const peer = (ctx: KoaContextWithOIDC) => (ctx.socket as TLSSocket);

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'orders-worker',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: 'CN=orders-worker',
    tls_client_certificate_bound_access_tokens: true,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'orders:read orders:write',
    // The only signing key is ES256; oidc-provider validates this client field against it.
    id_token_signed_response_alg: 'ES256',
  }, {
    client_id: 'reporting-cli',
    client_secret: 'dev-only-secret-reporting-cli-0001',
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'orders:read orders:write',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [{ ...signingKey, alg: 'ES256', use: 'sig', kid: 'bench' }] as never },
  scopes: ['orders:read', 'orders:write'],
  clientAuthMethods: ['tls_client_auth', 'client_secret_basic'],
  enabledJWA: { dPoPSigningAlgValues: ['ES256'] },
  responseTypes: ['none'],
  features: {
    devInteractions: { enabled: false },
    dPoP: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'orders:read orders:write',
        audience: RESOURCE,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      // As oidc-provider's documentation suggests for a Node TLS listener: read the socket's certificate.
      getCertificate: (ctx) => peer(ctx).getPeerX509Certificate() as never,
      certificateAuthorized: (ctx) => peer(ctx).authorized,
      certificateSubjectMatches: (ctx, property, expected) => {
        const certificate = peer(ctx).getPeerX509Certificate() as X509Certificate | undefined;
        return property === 'tls_client_auth_subject_dn' && certificate?.subject === expected.replace(/,\s*/g, '\n');
      },
    },
  },
});

const server = https.createServer({
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  ca: readFileSync(caFile),
  requestCert: true,
  rejectUnauthorized: false,
  keepAliveTimeout: 65_000,
}, provider.callback());

server.listen(Number(port), '127.0.0.1', () => process.send?.({ type: 'ready', port: Number(port) }));
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});

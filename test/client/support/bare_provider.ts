/**
 * A bare oidc-provider (the version Tether pins), configured as its documentation shows, as an
 * authorization server that is not Tether: client_credentials with resource indicators (RFC 8707),
 * JWT access tokens (RFC 9068), DPoP (RFC 9449, optionally with required nonces) and mTLS (RFC 8705:
 * tls_client_auth, self_signed_tls_client_auth, certificate-bound tokens).
 *
 * It listens twice, as a deployment with RFC 8705 §5 endpoint aliases does: the issuer's listener
 * asks for no client certificate; the alias listener does, and discovery names it in
 * `mtls_endpoint_aliases`. A client that presents its certificate on the wrong listener fails.
 */
import { generateKeyPairSync, randomBytes, type X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import Provider, { errors, type ClientMetadata, type KoaContextWithOIDC } from 'oidc-provider';

/** Options of {@link startBareProvider}. */
export interface BareProviderOptions {
  readonly tls: { readonly certificatePem: string; readonly privateKeyPem: string };
  /** CA that tls_client_auth certificates chain to. */
  readonly clientCa: string;
  /** resource URI → scopes it declares. */
  readonly resources: Readonly<Record<string, readonly string[]>>;
  readonly clients: readonly ClientMetadata[];
  /** RFC 9449 §8: require nonces in DPoP proofs at the token endpoint. */
  readonly requireDpopNonce?: boolean;
}

/** A running bare oidc-provider. */
export interface BareProvider {
  readonly issuer: string;
  /** Origin of the listener that asks for client certificates. */
  readonly mtlsOrigin: string;
  readonly jwks: { keys: Record<string, unknown>[] };
  close(): Promise<void>;
}

const peerOf = (ctx: KoaContextWithOIDC) => ctx.socket as TLSSocket;

/** Starts the provider on two loopback ports. */
export async function startBareProvider(options: BareProviderOptions): Promise<BareProvider> {
  const main = https.createServer({ cert: options.tls.certificatePem, key: options.tls.privateKeyPem });
  const mtls = https.createServer({
    cert: options.tls.certificatePem, key: options.tls.privateKeyPem, ca: options.clientCa, requestCert: true, rejectUnauthorized: false,
  });
  await Promise.all([main, mtls].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  const issuer = `https://localhost:${(main.address() as AddressInfo).port}`;
  const mtlsOrigin = `https://localhost:${(mtls.address() as AddressInfo).port}`;

  const signingKey = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bare' };
  const { d: _private, ...publicKey } = signingKey;

  const provider = new Provider(issuer, {
    clients: options.clients.map((client) => ({
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [], id_token_signed_response_alg: 'ES256', ...client,
    })),
    jwks: { keys: [signingKey] as never },
    scopes: [...new Set(Object.values(options.resources).flat())],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA'], clientAuthSigningAlgValues: ['ES256', 'EdDSA'] },
    responseTypes: ['none'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: {
        enabled: true,
        nonceSecret: randomBytes(32),
        requireNonce: () => options.requireDpopNonce === true,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined as never,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const scopes = options.resources[resourceIndicator];
          if (scopes === undefined) throw new errors.InvalidTarget();
          return { scope: scopes.join(' '), audience: resourceIndicator, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        },
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: (ctx) => peerOf(ctx).getPeerX509Certificate?.() as never,
        certificateAuthorized: (ctx) => peerOf(ctx).authorized,
        certificateSubjectMatches: (ctx, property, expected) => {
          const certificate = peerOf(ctx).getPeerX509Certificate?.() as X509Certificate | undefined;
          return property === 'tls_client_auth_subject_dn' && certificate?.subject === expected.replace(/,\s*/g, '\n');
        },
      },
    },
  });
  // RFC 8705 §5: oidc-provider leaves the aliases to the deployment, which knows its listeners.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'discovery' && ctx.status === 200) {
      const body = ctx.body as Record<string, unknown>;
      body.mtls_endpoint_aliases = { token_endpoint: `${mtlsOrigin}/token` };
    }
  });
  const callback = provider.callback();
  main.on('request', callback);
  mtls.on('request', callback);

  return {
    issuer,
    mtlsOrigin,
    jwks: { keys: [publicKey] },
    close: async () => {
      await Promise.all([main, mtls].map((server) => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })));
    },
  };
}

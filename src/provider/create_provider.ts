import type { JWK } from 'jose';
import Provider, { errors, type AdapterFactory, type JWKS, type KoaContextWithOIDC } from 'oidc-provider';
import { certificateOf } from '../binding/request_certificate.js';
import type { TetherConfig } from '../config/schema.js';
import { ALLOWED_JWS_ALGORITHMS, CLIENT_AUTH_METHODS, FEDERATED_REGISTERED_AUTH_METHOD } from './client_metadata.js';
import { certificateSubjectMatches } from './certificate_checks.js';
import { extraClaimsOf } from './token_extra.js';
import { requireTlsForClientSecrets } from './client_secret_transport.js';
import type { ConfigSnapshot } from './config_snapshot.js';
import { beforeClientCredentialsCheck, lookUpClientsWith } from './internals.js';
import { signingKeyOf } from './node_crypto_signing_key.js';
import { oauthErrorOf } from '../oauth/error_boundary.js';
import { Refusal } from '../oauth/refusal.js';
import { svidProblem, type SpiffeBundles } from '../federation/x509_svid.js';
import { revocationRefusal } from '../oauth/revocation_policy.js';

export interface ProviderDependencies {
  /** The configuration at start: what only a restart changes (issuer, signing, listeners) is read from it. */
  config: TetherConfig;
  /**
   * The configuration snapshot of the request being served (`ctx`: oidc-provider's current context,
   * undefined outside a request): clients and per-request policy come from it (config/reload_plan.ts).
   */
  snapshotOf(ctx: KoaContextWithOIDC | undefined): ConfigSnapshot;
  adapter: AdapterFactory;
  /** Private signing keys, current signing key first (keys/signing_keys.ts). */
  jwks: JWKS;
  /** 32 bytes shared by all instances, so a DPoP nonce from one instance is accepted by another. */
  dpopNonceSecret: Buffer;
  /** The `grant_type` values Tether serves (grants/registry.ts), every client's `grant_types`. */
  grantTypes: readonly string[];
  /** The X.509 authorities of each SPIFFE trust domain (federation/x509_svid.ts). */
  spiffeBundles: SpiffeBundles;
}

/** The SPIFFE ID a `tls_client_auth` client is registered with, if it authenticates by X.509-SVID. */
function spiffeIdOf(snapshot: ConfigSnapshot, clientId: string | undefined): string | undefined {
  const auth = clientId === undefined ? undefined : snapshot.clients.get(clientId)?.auth;
  return auth?.method === 'tls_client_auth' ? auth.spiffeId : undefined;
}

/**
 * RFC 7523 §3 as updated by draft-ietf-oauth-rfc7523bis: a client assertion's `aud` is the issuer
 * identifier, as a single string; the token endpoint URL and arrays are refused. oidc-provider
 * accepts, besides the issuer, the token and current endpoint URLs, and `aud` arrays containing one of
 * them (its FAPI 2.0 profile narrows it to the issuer, as here). The endpoint URLs are the ones an
 * attacker can aim at another server (the draft's audience-injection attack), and oidc-provider
 * builds them from the request.
 */
function assertAudienceIsIssuer(claims: Record<string, unknown>, issuer: string): void {
  if (claims.aud !== issuer) {
    throw oauthErrorOf(new Refusal('invalid_client', 'client authentication failed', 'audience (aud) must be the issuer identifier, as a single string'));
  }
}

/**
 * oidc-provider configured for Tether: client_credentials and token exchange only, resource
 * indicators, mTLS and DPoP, JWT access tokens. Tether's own grant handlers (grants/) replace the
 * built-in client_credentials handler; the policy hooks below refuse anything they do not cover.
 */
export function createProvider(deps: ProviderDependencies): Provider {
  const { config } = deps;
  const provider = new Provider(config.issuer, {
    adapter: deps.adapter,
    // No static clients: every lookup answers from the request's configuration snapshot (below).
    // ES256 keys sign through node:crypto (provider/node_crypto_signing_key.ts), any other through jose.
    jwks: { keys: deps.jwks.keys.map((key) => signingKeyOf(key as JWK)) } as JWKS,
    // `none` is what federated clients are registered as (provider/client_metadata.ts): enabled always,
    // so that a reload may add one; federation/client_authentication.ts refuses it without a verified assertion.
    clientAuthMethods: [...CLIENT_AUTH_METHODS, FEDERATED_REGISTERED_AUTH_METHOD] as never,
    assertJwtClientAuthClaimsAndHeader: async (_ctx, claims) => assertAudienceIsIssuer(claims, config.issuer),
    clientDefaults: {
      grant_types: [...deps.grantTypes],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: config.signing.algorithm,
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ALLOWED_JWS_ALGORITHMS as never,
      dPoPSigningAlgValues: ALLOWED_JWS_ALGORITHMS as never,
    },
    responseTypes: ['none'],
    scopes: [],
    claims: {},
    features: {
      // What lets ES256 tokens be signed through node:crypto (provider/node_crypto_signing_key.ts).
      // Experimental in oidc-provider 9; its version is pinned exactly (package.json).
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      // Tether serves discovery, jwks, token, introspection and revocation only. End-user and
      // registration endpoints are off (their routes would answer anonymous callers and write
      // sessions); the routes oidc-provider mounts regardless (/auth, /session/end/confirm) are
      // refused by http/served_routes.ts.
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      registration: { enabled: false },
      deviceFlow: { enabled: false },
      backchannelLogout: { enabled: false },
      ciba: { enabled: false },
      clientCredentials: { enabled: true },
      // Tether answers both endpoints itself once oidc-provider has authenticated the caller
      // (ledger/token_status_endpoints.ts): introspection per resource `introspectors`, revocation
      // only by the token's own client (RFC 7009 §2.1), for JWT and opaque tokens alike.
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => {
          const refusal = revocationRefusal(client.clientId, token.clientId);
          if (refusal) throw oauthErrorOf(refusal);
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        // Tether's grants resolve resources themselves (grants/resource_policy.ts); reaching these
        // hooks means a built-in path we do not support, so refuse rather than fall back.
        defaultResource: async () => undefined,
        getResourceServerInfo: async () => {
          throw new errors.InvalidTarget();
        },
        useGrantedResource: async () => true,
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        // The certificate binding/ resolved for the request (TLS socket or a trusted proxy's header).
        getCertificate: (ctx) => certificateOf(ctx)?.x509 as never,
        // RFC 8705 §2.1: chain validation for tls_client_auth.
        certificateAuthorized: (ctx) => {
          const certificate = certificateOf(ctx);
          const spiffeId = spiffeIdOf(deps.snapshotOf(ctx), ctx.oidc.client?.clientId);
          // `authorized`: the chain was verified against the client CA (TLS handshake or binding/proxy_certificate.ts).
          if (spiffeId === undefined) return certificate?.authorized ?? false;
          // An X.509-SVID client: its trust domain's bundle, never the client CA (federation/x509_svid.ts).
          const problem = certificate ? svidProblem(certificate.x509, spiffeId, deps.spiffeBundles) : 'no client certificate';
          if (problem) throw oauthErrorOf(new Refusal('invalid_client', 'client authentication failed', problem));
          return true;
        },
        certificateSubjectMatches: (ctx, property, expected) => {
          const certificate = certificateOf(ctx);
          return certificate ? certificateSubjectMatches(certificate.x509, property, expected) : false;
        },
      },
      dPoP: {
        enabled: true,
        nonceSecret: deps.dpopNonceSecret,
        requireNonce: (ctx) => deps.snapshotOf(ctx).config.dpop.requireNonce,
        // Replay is checked by Tether in the shared database (binding/dpop.ts).
        allowReplay: false,
      },
    },
    // Token lifetimes are chosen per resource by the grant handlers; this is only a safety net.
    ttl: { ClientCredentials: 300 },
    // Keeps the `act` claim that token exchange sets on the token before it is saved.
    extraTokenClaims: async (_ctx, token) => {
      const extra = extraClaimsOf(token);
      return Object.keys(extra).length > 0 ? { ...extra } : undefined;
    },
    formats: {
      customizers: {
        // RFC 8693 §4.1 delegation: an exchanged token's `sub` is the subject token's subject. For
        // ClientCredentials JWTs oidc-provider writes `sub` = client id after the extra claims, so
        // the one set by token exchange (grants/issuance_steps.ts) is put back here.
        jwt: (_ctx, token, jwt) => {
          const { sub } = extraClaimsOf(token);
          if (sub !== undefined) jwt.payload.sub = sub;
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  beforeClientCredentialsCheck(provider, requireTlsForClientSecrets(config.listeners.http?.allowClientSecrets ?? false));
  // Provider.ctx: the request oidc-provider is serving (its AsyncLocalStorage), whose snapshot was
  // pinned when the request arrived; a reload while it runs does not change its clients.
  lookUpClientsWith(provider, (id) => deps.snapshotOf(Provider.ctx).providerClients.get(id));
  return provider;
}

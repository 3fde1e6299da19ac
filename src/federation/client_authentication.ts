import { decodeJwt } from 'jose';
import type { Knex } from 'knex';
import OidcProvider, { type KoaContextWithOIDC, type Provider } from 'oidc-provider';
import type { ClientConfig } from '../config/schema.js';
import { oauthErrorOf, withErrorBoundary } from '../oauth/error_boundary.js';
import { DatabaseFailure, Refusal } from '../oauth/refusal.js';
import { aroundClientLookup, beforeClientCredentialsCheck, onParamsAssembled } from '../provider/internals.js';
import { recordAssertionOnce } from '../storage/federated_assertions.js';
import { issuerUnavailable, type ExternalIdentity } from './federation_errors.js';
import { IssuerUnavailableError } from './issuer_keys.js';
import { claimsMatch, ExternalTokenRefused, type ExternalTokenVerifier, type VerifiedExternalToken } from './verify_external_token.js';

/**
 * Federated client authentication (docs/federation.md): a client with `auth.method: federated`
 * authenticates with a token of a trusted issuer as its `client_assertion` (RFC 7523 §2.2, the
 * model of Azure's federated identity credentials and Keycloak's federated client authentication):
 *
 *   client_id=<Tether client>&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
 *   &client_assertion=<e.g. a Kubernetes service-account token whose aud is Tether's issuer>
 *
 * The assertion's `iss`/`sub` are the external identity, not the client id, so oidc-provider's own
 * check (RFC 7523 §3: `sub` = client id) cannot take it. It runs inside oidc-provider's client
 * authentication instead, in three hooks (provider/internals.ts):
 *
 *   1. parameters assembled: an assertion whose (unverified) `iss` is a trusted issuer is taken out
 *      of the parameters and kept for the request — oidc-provider then sees only `client_id`;
 *   2. client lookup: the client named is found; the assertion is verified (verify_external_token.ts),
 *      matched against the client's `federatedIdentities` (issuer, exact `sub`, required claims) and
 *      used once (below); any failure is the route's answer: invalid_client, or 503 when the issuer's
 *      keys cannot be fetched;
 *   3. client found: a federated client (registered in oidc-provider as `none`) is authenticated
 *      only by a verified assertion for it on this very request — a bare `client_id` is refused.
 *
 * Single use: an assertion with `jti` is recorded in the shared database (federated_assertions) and
 * refused a second time. One without (older Kubernetes tokens), or any of an issuer configured with
 * `singleUseAssertions: false` (a projected token the workload reads from its file again and
 * again), cannot be told from its replay, so it is accepted only at the token endpoint, for a client
 * whose tokens are sender-constrained (the new token is bound to the DPoP key or certificate proven
 * on the request), and only if its whole lifetime (exp − iat) is within the issuer's maxTokenAge.
 */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** RFC 6749 §5.2 invalid_client: the public description is oidc-provider's own; the reason goes to the ledger. */
function clientAuthenticationFailed(reason: string): Refusal {
  return new Refusal('invalid_client', 'client authentication failed', reason);
}

/**
 * The hooks run inside oidc-provider's client authentication, outside the grants' error boundary
 * (grants/registry.ts): a refusal they throw leaves here as its OAuth error (oauth/error_boundary.ts).
 */
function refusingAsOAuthError<A extends unknown[]>(hook: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      hook(...args);
    } catch (error) {
      throw error instanceof Refusal ? oauthErrorOf(error) : error;
    }
  };
}

/** What client authentication learned on a request. */
export interface FederatedClientAuthentication {
  /** The external identity that authenticated the request's client; undefined for any other authentication. */
  identityOf(ctx: KoaContextWithOIDC): ExternalIdentity | undefined;
}

interface Attempt {
  clientId: string;
  assertion: string;
  verified?: ExternalIdentity;
}

export function installFederatedClientAuthentication(provider: Provider, deps: {
  verifier: ExternalTokenVerifier;
  /** The configured clients for a request (its configuration snapshot). */
  clientsOf(ctx: KoaContextWithOIDC | undefined): ReadonlyMap<string, ClientConfig>;
  knex: Knex;
}): FederatedClientAuthentication {
  const attempts = new WeakMap<object, Attempt>();

  onParamsAssembled(provider, refusingAsOAuthError((ctx, params) => {
    const assertion = params.client_assertion;
    if (params.client_assertion_type !== JWT_BEARER || typeof assertion !== 'string') return;
    // Several credentials at once: oidc-provider refuses the mix itself (one mechanism only).
    if (ctx.get('authorization') !== '' || params.client_secret !== undefined) return;
    // An assertion from a trusted issuer, or any assertion naming a federated client (then one from
    // an untrusted issuer is refused as such, not by oidc-provider's `sub` = client id rule).
    const namesFederatedClient = typeof params.client_id === 'string' && deps.clientsOf(ctx).get(params.client_id)?.auth.method === 'federated';
    if (!namesFederatedClient && !deps.verifier.isTrustedIssuer(unverifiedIssuerOf(assertion))) return;
    if (typeof params.client_id !== 'string' || params.client_id === '') {
      const missing = 'client_id is required with a client_assertion from a federated issuer';
      throw new Refusal('invalid_request', missing, missing);
    }
    attempts.set(ctx, { clientId: params.client_id, assertion });
    params.client_assertion = undefined;
    params.client_assertion_type = undefined;
  }));

  // OidcProvider.ctx: the request oidc-provider is serving (its AsyncLocalStorage).
  aroundClientLookup(provider, () => OidcProvider.ctx, async (ctx, id, find) => {
    const client = await find(id);
    const attempt = ctx ? attempts.get(ctx) : undefined;
    if (!client || !attempt || attempt.verified || attempt.clientId !== id) return client;
    attempt.verified = await withErrorBoundary(() => authenticate(ctx!, attempt.assertion, deps.clientsOf(ctx).get(id)));
    return client;
  });

  beforeClientCredentialsCheck(provider, refusingAsOAuthError((ctx) => {
    const attempt = attempts.get(ctx);
    const client = deps.clientsOf(ctx).get(ctx.oidc.client!.clientId);
    if (client?.auth.method === 'federated' && (attempt?.verified === undefined || attempt.clientId !== client.id)) {
      throw clientAuthenticationFailed(`client ${client.id} authenticates only with a federated client_assertion`);
    }
  }));

  async function authenticate(ctx: KoaContextWithOIDC, assertion: string, client: ClientConfig | undefined): Promise<ExternalIdentity> {
    if (client?.auth.method !== 'federated') {
      throw clientAuthenticationFailed(`client ${client?.id} does not authenticate with federated identities`);
    }
    const verified = await verifyAssertion(assertion);
    const { claims, issuer } = verified;
    const identity = client.federatedIdentities.find((candidate) => candidate.issuer === issuer.issuer && candidate.subject === claims.sub && claimsMatch(claims, candidate.claims));
    if (!identity) {
      throw clientAuthenticationFailed(`${issuer.issuer} subject ${JSON.stringify(claims.sub).slice(0, 160)} is not a federated identity of client ${client.id} (or lacks its required claims)`);
    }
    await requireSingleUse(ctx, verified, client);
    return { issuer: issuer.issuer, subject: claims.sub, tokenId: verified.tokenId };
  }

  async function verifyAssertion(assertion: string): Promise<VerifiedExternalToken> {
    try {
      return await deps.verifier.verify(assertion);
    } catch (error) {
      if (error instanceof IssuerUnavailableError) throw issuerUnavailable(error);
      if (error instanceof ExternalTokenRefused) throw clientAuthenticationFailed(error.message);
      throw error;
    }
  }

  async function requireSingleUse(ctx: KoaContextWithOIDC, { claims, issuer }: VerifiedExternalToken, client: ClientConfig): Promise<void> {
    if (typeof claims.jti === 'string' && claims.jti !== '' && issuer.singleUseAssertions) {
      const expiresAt = new Date((claims.exp + issuer.clockLeeway) * 1000);
      let first: boolean;
      try {
        first = await recordAssertionOnce(deps.knex, { key: `${issuer.issuer}\0${claims.jti}`, expiresAt });
      } catch (error) {
        throw new DatabaseFailure(error);
      }
      if (!first) throw clientAuthenticationFailed(`federated client assertion ${issuer.issuer} jti ${JSON.stringify(claims.jti).slice(0, 80)} was already used`);
      return;
    }
    const why = issuer.singleUseAssertions ? 'has no jti' : 'is reusable (singleUseAssertions: false)';
    if (ctx.oidc.route !== 'token' || client.binding === 'none') {
      throw clientAuthenticationFailed(`assertion of ${issuer.issuer} ${why}: accepted only at the token endpoint, for a client with sender-constrained tokens`);
    }
    if (claims.exp - claims.iat > issuer.maxTokenAge) {
      throw clientAuthenticationFailed(`assertion of ${issuer.issuer} ${why} and lives ${claims.exp - claims.iat} s, longer than maxTokenAge ${issuer.maxTokenAge} s`);
    }
  }

  return { identityOf: (ctx) => attempts.get(ctx)?.verified };
}

function unverifiedIssuerOf(assertion: string): unknown {
  try {
    return decodeJwt(assertion).iss;
  } catch {
    return undefined;
  }
}

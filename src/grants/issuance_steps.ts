import { decodeJwt, decodeProtectedHeader } from 'jose';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { isJwsAlgorithm, JWS_ALGORITHMS } from '../config/jws_algorithms.js';
import type { ClientConfig, ResourceConfig } from '../config/schema.js';
import { opaqueTokenId } from '../keys/own_tokens.js';
import type { IssuedToken, TokenBinding } from '../ledger/events.js';
import { ClientSuspendedError, ParentRefusedError } from '../ledger/record_issuance.js';
import { validateDpopProof, type ValidatedDpopProof } from '../provider/internals.js';
import { PolicyError, selectBinding } from '../provider/resource_policy.js';
import { timedStep } from '../observability/issuance_timing.js';
import type { GrantContext } from './grant_context.js';

/**
 * The steps every Tether grant shares, in the order a grant uses them. Each throws the OAuth error a
 * client should see; the private reason travels as `error_detail`, which oidc-provider never renders.
 */

type OAuthError = InstanceType<typeof errors.OIDCProviderError> & { error_detail?: string };

function withDetail<E extends OAuthError>(error: E, detail: string): E {
  error.error_detail = detail;
  return error;
}

/** The OAuth error a policy refusal names, with its private reason as `error_detail`. */
export function oauthErrorOf(refusal: PolicyError): OAuthError {
  const oauthError = {
    invalid_target: () => new errors.InvalidTarget(refusal.description),
    // The refused scopes stay private (ledger): the response carries no `scope` member.
    invalid_scope: () => new errors.InvalidScope(refusal.description, undefined as unknown as string),
    invalid_request: () => new errors.InvalidRequest(refusal.description),
  }[refusal.error]();
  return withDetail(oauthError, refusal.reason);
}

/** Runs pure policy and converts its PolicyError into the OAuth error it names. */
export function withPolicyErrors<T>(decide: () => T): T {
  try {
    return decide();
  } catch (error) {
    throw error instanceof PolicyError ? oauthErrorOf(error) : error;
  }
}

/** The Tether configuration of the authenticated client (oidc-provider has already authenticated it). */
export function tetherClientOf(grant: GrantContext, ctx: KoaContextWithOIDC): ClientConfig {
  const client = grant.snapshotOf(ctx).clients.get(ctx.oidc.client!.clientId);
  if (!client) throw new Error(`client ${ctx.oidc.client!.clientId} is registered in oidc-provider but not in the configuration`);
  return client;
}

/** A suspended client gets no new tokens (its live tokens were revoked when it was suspended). */
export async function requireActiveClient(grant: GrantContext, client: ClientConfig): Promise<void> {
  const suspended = await databaseStep(() => grant.ledger.isClientSuspended(client.id));
  if (suspended) throw clientSuspended(client.id);
}

function clientSuspended(clientId: string): OAuthError {
  return withDetail(new errors.UnauthorizedClient('the client may not obtain tokens at this time'), `client ${clientId} is suspended`);
}

/**
 * The sender constraint of the token about to be minted, chosen per client (DESIGN: every token is
 * bound by default). mTLS: RFC 8705 §3; DPoP: RFC 9449 §5, with replay detection in the shared database.
 */
export async function bindToken(grant: GrantContext, ctx: KoaContextWithOIDC, client: ClientConfig, resource: ResourceConfig): Promise<TokenBinding> {
  const method = withPolicyErrors(() => selectBinding(client, resource));
  const dpopHeader = ctx.get('DPoP');

  if (method === 'mtls') {
    if (dpopHeader) {
      throw withDetail(new errors.InvalidRequest('this client\'s tokens are certificate-bound; DPoP is not accepted'), 'DPoP proof sent by an mTLS-bound client');
    }
    const certificate = grant.certificateOf(ctx);
    if (!certificate) {
      throw withDetail(new errors.InvalidRequest('a TLS client certificate is required: this client\'s tokens are certificate-bound'), 'no client certificate on the connection');
    }
    return { method: 'mtls', thumbprint: certificate.thumbprint };
  }

  if (method === 'dpop') {
    const proof = await validatedDpopProof(grant, ctx);
    if (!proof) {
      throw withDetail(new errors.InvalidRequest('a DPoP proof is required: this client\'s tokens are DPoP-bound'), 'no DPoP header');
    }
    await rejectReplayedProof(grant, proof.thumbprint, proof.jti, proof.iat);
    return { method: 'dpop', thumbprint: proof.thumbprint };
  }

  return { method: 'bearer' };
}

/**
 * The request's DPoP proof after RFC 9449 §4.3's checks, or undefined when there is none. Check 5
 * (`alg` is an asymmetric algorithm the server supports) is made here first, with a description that
 * says so: oidc-provider refuses such a proof as "invalid DPoP key binding", which tells a client
 * whose library signs with another algorithm nothing. The supported list is public (discovery's
 * `dpop_signing_alg_values_supported`); the algorithm sent goes only to the ledger.
 */
export async function validatedDpopProof(grant: GrantContext, ctx: KoaContextWithOIDC): Promise<ValidatedDpopProof | undefined> {
  const proof = ctx.get('DPoP');
  if (proof) requireSupportedProofAlgorithm(proof);
  return validateDpopProof(grant.provider, ctx);
}

function requireSupportedProofAlgorithm(proof: string): void {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(proof).alg;
  } catch {
    // Not a JWS at all: oidc-provider's validation refuses it as such.
    return;
  }
  if (isJwsAlgorithm(alg)) return;
  throw withDetail(
    new errors.InvalidDpopProof(`unsupported DPoP proof alg; supported: ${JWS_ALGORITHMS.join(', ')}`),
    `DPoP proof alg ${JSON.stringify(alg)?.slice(0, 64)} is not one of ${JWS_ALGORITHMS.join(', ')}`,
  );
}

/** oidc-provider accepts a proof whose iat is within this many seconds of now (its CHALLENGE_OK_WINDOW). */
const DPOP_PROOF_WINDOW_SECONDS = 300;

/**
 * RFC 9449 §11.1: a proof is single-use. The check is one atomic insert in the shared database, so two
 * instances (or two concurrent requests) presenting one proof give exactly one token.
 */
async function rejectReplayedProof(grant: GrantContext, jkt: string, jti: string, iat: number): Promise<void> {
  // RFC 9449 §11.1: jti is unique per key; the replay check stores only the hash of this key.
  const key = `${jkt}\0${jti}`;
  const expiresAt = new Date((Math.max(iat, Date.now() / 1000) + DPOP_PROOF_WINDOW_SECONDS) * 1000);
  const first = await databaseStep(() => grant.dpopProofs.recordOnce({ key, expiresAt }));
  if (!first) {
    throw withDetail(new errors.InvalidDpopProof('DPoP proof JWT replay detected'), `replayed DPoP proof jti for jkt ${jkt}`);
  }
}

interface MintRequest {
  client: ClientConfig;
  resource: ResourceConfig;
  scopes: string[];
  binding: TokenBinding;
  lifetimeSeconds: number;
  /** Token exchange: the token expires no later than this (the subject token's `exp`). */
  notAfter?: Date;
  /** Token exchange (RFC 8693 §4.1): `sub` is the subject token's subject, not this client. */
  subject?: string;
  parentTokenId?: string;
  act?: Record<string, unknown>;
  /** Further claims of the new token (federation: `external_subject`). */
  claims?: Record<string, unknown>;
  /** Federation: the external identity the token is issued for (ledger). */
  external?: IssuedToken['external'];
}

/** Mints the access token through oidc-provider's token model (RFC 9068 JWT, or opaque per resource). */
export async function mintAccessToken(grant: GrantContext, ctx: KoaContextWithOIDC, request: MintRequest): Promise<IssuedToken> {
  const { provider } = grant;
  const { config } = grant.snapshotOf(ctx);
  const token = new provider.ClientCredentials({
    client: ctx.oidc.client!,
    scope: request.scopes.join(' ') || undefined,
    expiresIn: request.lifetimeSeconds,
  });
  token.resourceServer = new provider.ResourceServer(request.resource.uri, {
    scope: request.resource.scopes.join(' '),
    accessTokenFormat: request.resource.format,
    accessTokenTTL: request.lifetimeSeconds,
    jwt: { sign: { alg: config.signing.algorithm } },
  });
  if (request.binding.method === 'mtls') (token as unknown as Record<string, unknown>)['x5t#S256'] = request.binding.thumbprint;
  if (request.binding.method === 'dpop') token.setThumbprint('jkt', request.binding.thumbprint);
  // An absolute exp wins over expiresIn in oidc-provider's token formats, so the clock moving on
  // between policy and minting cannot carry the token past its bound.
  if (request.notAfter) token.exp = Math.min(Math.floor(Date.now() / 1000) + request.lifetimeSeconds, Math.floor(request.notAfter.getTime() / 1000));
  // Read back by the provider's extraTokenClaims hook (create_provider.ts), which otherwise resets it;
  // its JWT customizer puts `sub` back over the client id that oidc-provider writes.
  if (request.act || request.subject || request.claims) {
    token.extra = { ...request.claims, ...(request.subject ? { sub: request.subject } : {}), ...(request.act ? { act: request.act } : {}) };
  }

  ctx.oidc.entity('ClientCredentials', token);
  const value = await timedStep(ctx, 'signing', () => databaseStep(() => token.save()));
  const { tokenId, issuedAt, expiresAt } = tokenFacts(request.resource.format, value, token);

  return {
    value,
    format: request.resource.format,
    tokenId,
    clientId: request.client.id,
    resource: request.resource.uri,
    scope: request.scopes,
    binding: request.binding,
    issuedAt,
    expiresAt,
    parentTokenId: request.parentTokenId,
    act: request.act,
    // A token exchanged from Tether's own inherits its parent's subject in the ledger; a root says its own.
    ...(request.parentTokenId === undefined && request.subject ? { subject: request.subject } : {}),
    external: request.external,
  };
}

function tokenFacts(format: 'jwt' | 'opaque', value: string, token: { jti?: string; iat?: number; exp?: number; expiration: number }) {
  if (format === 'jwt') {
    const { jti, iat, exp } = decodeJwt(value);
    return { tokenId: jti!, issuedAt: new Date(iat! * 1000), expiresAt: new Date(exp! * 1000) };
  }
  const iat = token.iat ?? Math.floor(Date.now() / 1000);
  return { tokenId: opaqueTokenId(token.jti!), issuedAt: new Date(iat * 1000), expiresAt: new Date((token.exp ?? iat + token.expiration) * 1000) };
}

/**
 * DESIGN "no token without a record": the response is built only after the issuance event is committed.
 * If the database cannot commit, the client gets 503 + Retry-After and no token.
 */
export async function recordIssuance(grant: GrantContext, ctx: KoaContextWithOIDC, event: { type: 'token.issued' | 'token.exchanged'; issued: IssuedToken }): Promise<void> {
  // Federation: a token issued to a client that authenticated with an external identity records it
  // (a federated exchange has already put its subject token's identity here).
  event.issued.external ??= grant.federation.clientIdentityOf(ctx);
  try {
    await timedStep(ctx, 'ledger', () => grant.ledger.recordIssuance(event, grant.requestFactsOf(ctx)));
  } catch (error) {
    if (event.issued.format === 'opaque') {
      // The client never sees this token; remove it so nothing usable exists without its record.
      // (An opaque token's value is its id.)
      await grant.provider.ClientCredentials.adapter.destroy(event.issued.value).catch(() => undefined);
    }
    // The record itself refuses a client suspended since requireActiveClient looked (ledger/record_issuance.ts).
    if (error instanceof ClientSuspendedError) throw clientSuspended(error.clientId);
    // …and an exchanged token whose subject token was revoked since the grant checked it: the grant answers that.
    if (error instanceof ParentRefusedError) throw error;
    throw unavailable(error);
  }
}

/** Runs a database step of the token path; a database failure becomes 503 temporarily_unavailable. */
export async function databaseStep<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof errors.OIDCProviderError) throw error;
    throw unavailable(error);
  }
}

/**
 * RFC 6749 §5.2 has no 5xx; `temporarily_unavailable` with 503 is the common practice. The HTTP layer
 * adds Retry-After to every 503.
 */
export function unavailable(cause: unknown): OAuthError {
  const error = withDetail(new errors.TemporarilyUnavailable('the server cannot record tokens right now; retry later'), `database unavailable: ${(cause as Error)?.message ?? String(cause)}`);
  error.status = 503;
  error.statusCode = 503;
  return error;
}

/** RFC 6749 §5.1 (and RFC 8693 §2.2.1 for exchange) success response. */
export function respondWithToken(ctx: KoaContextWithOIDC, issued: IssuedToken, extra: Record<string, unknown> = {}): void {
  ctx.body = {
    access_token: issued.value,
    ...extra,
    token_type: issued.binding.method === 'dpop' ? 'DPoP' : 'Bearer',
    expires_in: Math.max(0, Math.round((issued.expiresAt.getTime() - Date.now()) / 1000)),
    scope: issued.scope.join(' ') || undefined,
  };
}

import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import { BINDING_METHODS, tokenTypeOf, type TokenBinding } from '../binding/methods.js';
import { replayedProofRefusal } from '../binding/dpop.js';
import type { TokenBinder } from '../binding/token_binder.js';
import type { ClientConfig, ResourceConfig, TetherConfig } from '../config/schema.js';
import { opaqueTokenId } from '../keys/own_tokens.js';
import type { ExternalIdentity, IssuanceEventType, IssuedToken, RequestFacts } from '../ledger/events.js';
import type { IssuanceLedger } from '../ledger/issuance_recorder.js';
import { ClientSuspendedError, ParentRefusedError, ProofReplayedError } from '../ledger/record_issuance.js';
import { databaseStep } from '../oauth/error_boundary.js';
import { DatabaseFailure, Refusal } from '../oauth/refusal.js';
import { timedStep } from '../observability/issuance_timing.js';
import type { ConfigSnapshot } from '../provider/config_snapshot.js';
import { setExtraClaims, type ExtraClaims } from '../provider/token_extra.js';

/**
 * The steps every Tether grant shares, in the order a grant uses them. Each throws the Refusal a
 * client should see (oauth/refusal.ts); the registry's error boundary turns it into the OAuth error.
 * Each step takes only what it uses; {@link IssuanceDependencies} is what a grant built on them needs.
 */

/** What the shared issuance steps use: the request's configuration, the ledger, the mint and the binder. */
export interface IssuanceDependencies {
  /**
   * The configuration the request runs with (clients, resources, policy), read once when it
   * arrived: a reload while it runs does not change it (provider/config_snapshot.ts).
   */
  snapshotOf(ctx: KoaContextWithOIDC): ConfigSnapshot;
  ledger: IssuanceLedger;
  mint: TokenMint;
  binder: TokenBinder;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
  /**
   * Federation: the external identity that authenticated this request's client (federated client
   * authentication, federation/client_authentication.ts), recorded with what it is issued.
   */
  externalIdentityOf(ctx: KoaContextWithOIDC): ExternalIdentity | undefined;
}

/** The Tether configuration of the authenticated client (oidc-provider has already authenticated it). */
export function tetherClientOf(clients: ReadonlyMap<string, ClientConfig>, ctx: KoaContextWithOIDC): ClientConfig {
  const client = clients.get(ctx.oidc.client!.clientId);
  if (!client) throw new Error(`client ${ctx.oidc.client!.clientId} is registered in oidc-provider but not in the configuration`);
  return client;
}

/** A suspended client gets no new tokens (its live tokens were revoked when it was suspended). */
export async function requireActiveClient(ledger: Pick<IssuanceLedger, 'isClientSuspended'>, client: ClientConfig): Promise<void> {
  const suspended = await databaseStep(() => ledger.isClientSuspended(client.id));
  if (suspended) throw clientSuspended(client.id);
}

function clientSuspended(clientId: string): Refusal {
  return new Refusal('unauthorized_client', 'the client may not obtain tokens at this time', `client ${clientId} is suspended`);
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
  claims?: Pick<ExtraClaims, 'external_subject'>;
  /** Federation: the external identity the token is issued for (ledger). */
  external?: IssuedToken['external'];
}

/** Mints access tokens through oidc-provider's token model, and removes one no client will see. */
export interface TokenMint {
  mintAccessToken(ctx: KoaContextWithOIDC, request: MintRequest): Promise<IssuedToken>;
  /** Deletes a minted opaque token whose issuance could not be recorded (a JWT cannot be unminted). */
  discard(issued: IssuedToken): Promise<void>;
}

export function tokenMint(provider: Provider, signingAlgorithm: TetherConfig['signing']['algorithm']): TokenMint {
  return {
    mintAccessToken: (ctx, request) => mintAccessToken(provider, signingAlgorithm, ctx, request),
    async discard(issued) {
      // An opaque token's value is its id.
      if (issued.format === 'opaque') await provider.ClientCredentials.adapter.destroy(issued.value).catch(() => undefined);
    },
  };
}

/** Mints the access token through oidc-provider's token model (RFC 9068 JWT, or opaque per resource). */
async function mintAccessToken(provider: Provider, signingAlgorithm: TetherConfig['signing']['algorithm'], ctx: KoaContextWithOIDC, request: MintRequest): Promise<IssuedToken> {
  const token = new provider.ClientCredentials({
    client: ctx.oidc.client!,
    scope: request.scopes.join(' ') || undefined,
    expiresIn: request.lifetimeSeconds,
  });
  token.resourceServer = new provider.ResourceServer(request.resource.uri, {
    scope: request.resource.scopes.join(' '),
    accessTokenFormat: request.resource.format,
    accessTokenTTL: request.lifetimeSeconds,
    jwt: { sign: { alg: signingAlgorithm } },
  });
  // RFC 7800 `cnf`: oidc-provider keeps the thumbprint under the method's cnf member (`x5t#S256`, `jkt`).
  if (request.binding.method !== 'bearer') (token as unknown as Record<string, string>)[BINDING_METHODS[request.binding.method].cnfMember] = request.binding.thumbprint;
  // iat and exp are set here, and oidc-provider's token formats use them as given (each falls back to
  // the clock only when absent): the ledger row then takes them from the token model, with no decoding
  // of the JWT just signed (docs/benchmarks.md, 2026-12-08), and both come from one reading of the clock.
  // An absolute exp also keeps the clock moving on between policy and minting from carrying the token
  // past its bound.
  token.iat = Math.floor(Date.now() / 1000);
  token.exp = request.notAfter
    ? Math.min(token.iat + request.lifetimeSeconds, Math.floor(request.notAfter.getTime() / 1000))
    : token.iat + request.lifetimeSeconds;
  // Read back by the provider's extraTokenClaims hook (create_provider.ts), which otherwise resets it;
  // its JWT customizer puts `sub` back over the client id that oidc-provider writes.
  setExtraClaims(token, { ...request.claims, sub: request.subject || undefined, act: request.act });

  ctx.oidc.entity('ClientCredentials', token);
  const value = await timedStep(ctx, 'signing', () => databaseStep(() => token.save()));
  const { tokenId, issuedAt, expiresAt } = tokenFacts(request.resource.format, token);

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

/** The ledger's facts of a token just minted, from its model: a JWT's jti, iat and exp are the model's (set above). */
function tokenFacts(format: 'jwt' | 'opaque', token: { jti?: string; iat?: number; exp?: number }) {
  return {
    tokenId: format === 'jwt' ? token.jti! : opaqueTokenId(token.jti!),
    issuedAt: new Date(token.iat! * 1000),
    expiresAt: new Date(token.exp! * 1000),
  };
}

/**
 * DESIGN "no token without a record": the response is built only after the issuance event is committed.
 * If the database cannot commit, the client gets 503 + Retry-After and no token.
 */
export async function recordIssuance(
  deps: Pick<IssuanceDependencies, 'ledger' | 'mint' | 'requestFactsOf' | 'externalIdentityOf'>,
  ctx: KoaContextWithOIDC,
  event: { type: IssuanceEventType; issued: IssuedToken },
): Promise<void> {
  // Federation: a token issued to a client that authenticated with an external identity records it
  // (a federated exchange has already put its subject token's identity here).
  event.issued.external ??= deps.externalIdentityOf(ctx);
  try {
    await timedStep(ctx, 'ledger', () => deps.ledger.recordIssuance(event, deps.requestFactsOf(ctx)));
  } catch (error) {
    // The client never sees this token; remove it so nothing usable exists without its record.
    await deps.mint.discard(event.issued);
    // The record itself refuses a client suspended since requireActiveClient looked (ledger/record_issuance.ts).
    if (error instanceof ClientSuspendedError) throw clientSuspended(error.clientId);
    // RFC 9449 §11.1: the DPoP proof was used before; the record of its first use committed instead.
    if (error instanceof ProofReplayedError) throw replayedProofRefusal(error.thumbprint);
    // …and an exchanged token whose subject token was revoked since the grant checked it: the grant answers that.
    if (error instanceof ParentRefusedError) throw error;
    throw new DatabaseFailure(error);
  }
}

/** RFC 6749 §5.1 (and RFC 8693 §2.2.1 for exchange) success response. */
export function respondWithToken(ctx: KoaContextWithOIDC, issued: IssuedToken, extra: Record<string, unknown> = {}): void {
  ctx.body = {
    access_token: issued.value,
    ...extra,
    token_type: tokenTypeOf(issued.binding),
    expires_in: Math.max(0, Math.round((issued.expiresAt.getTime() - Date.now()) / 1000)),
    scope: issued.scope.join(' ') || undefined,
  };
}

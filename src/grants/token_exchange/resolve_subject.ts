import type { JWTPayload } from 'jose';
import type { Provider } from 'oidc-provider';
import { opaqueTokenId, type OwnTokenVerifier, type PresentedToken as OwnToken } from '../../keys/own_tokens.js';
import type { TokenStanding } from '../../ledger/lineage.js';
import { Refusal } from '../../oauth/refusal.js';
import { scopesOf } from '../../oauth/scope.js';
import { extraClaimsOf } from '../../provider/token_extra.js';
import { databaseStep } from '../../oauth/error_boundary.js';
import type { IssuanceDependencies } from '../issuance_steps.js';
import { InvalidPresentedToken, type ActClaim, type ExchangeableToken } from './exchange_policy.js';
import type { PresentedToken } from './parse_request.js';

/**
 * Step 2 of token exchange: a presented subject or actor token → the facts policy decides on, or a
 * refusal. Only tokens Tether issued are exchangeable, and only while they are active:
 *
 *   JWT    — signature by one of Tether's own signing keys (the keys this instance signs and
 *            publishes with; nothing is fetched), `typ` at+jwt (RFC 9068 §2.1), `iss` = our issuer, not expired;
 *   opaque — found by oidc-provider's ClientCredentials model, not expired;
 *   both   — present in the ledger's `issued_tokens`, and neither it nor any token it was exchanged
 *            from revoked (the row exists for every token: issuance commits it before the response);
 *            for the subject token the issuance statement checks this, for an actor token this module.
 */

type Parameter = 'subject_token' | 'actor_token';

/** The public description when a lineage is as deep as lineages may be (ledger/lineage.ts). */
export const LINEAGE_TOO_DEEP = 'the exchange lineage of the subject token is too long to exchange it again';

/** What resolving a presented token uses (besides the shared issuance steps of the exchange). */
export interface PresentedTokenDependencies extends IssuanceDependencies {
  /** Tether's own JWTs: its published keys, including ones another instance began signing with. */
  ownTokens: OwnTokenVerifier;
  /** oidc-provider's stored opaque access tokens. */
  opaqueTokens: {
    find(value: string, options: { ignoreExpiration: boolean }): Promise<InstanceType<Provider['ClientCredentials']> | undefined>;
  };
  /** The token's ledger row and its ancestors' (ledger/lineage.ts). */
  standingOf(tokenId: string): Promise<TokenStanding>;
}

/** Resolves a presented token to verified facts; throws InvalidPresentedToken (→ invalid_grant) or invalid_request. */
export async function resolvePresentedToken(
  deps: Pick<PresentedTokenDependencies, 'ownTokens' | 'opaqueTokens' | 'standingOf'>,
  presented: PresentedToken,
  parameter: Parameter,
): Promise<ExchangeableToken> {
  // Tether issues no ID tokens; only a trusted external issuer's can be exchanged (federation/subject_tokens.ts).
  // RFC 8693 §2.2.2: for Tether's own tokens the type is unsupported (invalid_request), as before federation.
  if (presented.type === 'id_token') throw new Refusal('invalid_request', `unsupported ${parameter}_type`, 'id_token from an issuer that is not a trusted external issuer');
  // The keys may have to be read from the database (a kid this instance has not seen yet): an
  // outage there is 503, not a refusal of a valid token.
  const identified = await databaseStep(() => deps.ownTokens.identify(presented.value));
  const token = identified.kind === 'opaque'
    ? await readOpaqueAccessToken(deps.opaqueTokens, presented, parameter)
    : jwtAccessToken(identified, parameter);
  // The subject token becomes the new token's parent, and the issuance statement checks a parent's
  // standing itself, under lock, in the same round trip that records the child (ledger/record_issuance.ts):
  // no record, revoked, descended from a revoked token, lineage full — refusals that
  // token_exchange/handler.ts maps to the same errors this check gives. Reading it here as well would
  // be a second statement per exchange deciding nothing the first does not decide again, and could not
  // replace it (a revocation may commit in between). An actor token is nobody's parent: read here.
  if (parameter === 'actor_token') await requireActiveInLedger(deps.standingOf, token, parameter);
  return token;
}

/**
 * A foreign key (no matching kid), a changed byte, another issuer or typ, an expired token: all are
 * tokens Tether will not exchange, told apart only in the private detail.
 */
function jwtAccessToken(identified: Exclude<OwnToken, { kind: 'opaque' }>, parameter: Parameter): ExchangeableToken {
  if (identified.kind === 'unrecognized') throw new InvalidPresentedToken(parameter, identified.reason);
  if (identified.expired) throw new InvalidPresentedToken(parameter, `JWT not accepted: ${identified.expiredReason}`);
  return tokenFromClaims(identified.claims, parameter);
}

/** The claims of a verified Tether at+jwt → facts (a claim of an unexpected shape is not ours to trust). */
function tokenFromClaims(claims: JWTPayload, parameter: Parameter): ExchangeableToken {
  const malformed = (claim: string): never => {
    throw new InvalidPresentedToken(parameter, `JWT claim ${claim} has an unexpected shape`);
  };
  const audience = Array.isArray(claims.aud) && claims.aud.length === 1 ? claims.aud[0] : claims.aud;
  if (typeof audience !== 'string') malformed('aud');
  if (typeof claims.client_id !== 'string') malformed('client_id');
  if (claims.scope !== undefined && typeof claims.scope !== 'string') malformed('scope');
  return {
    tokenId: claims.jti!,
    format: 'jwt',
    clientId: claims.client_id as string,
    subject: claims.sub!,
    audience: audience as string,
    scopes: scopesOf(claims.scope as string | undefined),
    expiresAt: new Date(claims.exp! * 1000),
    confirmation: confirmationOf(claims.cnf) ?? malformed('cnf'),
    act: claims.act === undefined ? undefined : actClaimOf(claims.act) ?? malformed('act'),
    mayAct: mayActOf(claims.may_act),
  };
}

/**
 * Opaque tokens are looked up through oidc-provider's own model (the adapter), so that exactly the
 * tokens it would introspect as active are exchangeable. A value that looks like a JWT but was
 * declared as one (`…:token-type:jwt`) is never an opaque token: RFC 8693 §2.2.2 invalid_request.
 */
async function readOpaqueAccessToken(opaqueTokens: PresentedTokenDependencies['opaqueTokens'], presented: PresentedToken, parameter: Parameter): Promise<ExchangeableToken> {
  if (presented.type === 'jwt') {
    throw new Refusal('invalid_request', `${parameter} is not a JWT`, `${parameter}_type jwt with a value that is not a compact JWS`);
  }
  const token = await databaseStep(() => opaqueTokens.find(presented.value, { ignoreExpiration: true }));
  if (!token) throw new InvalidPresentedToken(parameter, 'opaque token not found');
  if (token.isExpired) throw new InvalidPresentedToken(parameter, `opaque token expired at ${new Date(token.exp! * 1000).toISOString()}`);

  const extra = extraClaimsOf(token);
  const audience = Array.isArray(token.aud) ? token.aud[0] : token.aud;
  if (typeof audience !== 'string') throw new InvalidPresentedToken(parameter, 'opaque token without an audience');
  return {
    tokenId: opaqueTokenId(token.jti),
    format: 'opaque',
    clientId: token.clientId!,
    // An exchanged opaque token keeps its subject in `extra` (issuance_steps.ts mintAccessToken).
    subject: extra.sub ?? token.clientId!,
    audience,
    scopes: scopesOf(token.scope),
    expiresAt: new Date(token.exp! * 1000),
    confirmation: { x5t: token['x5t#S256'], jkt: token.jkt },
    act: extra.act === undefined ? undefined : actClaimOf(extra.act) ?? invalidActClaim(parameter),
    mayAct: mayActOf(extra.may_act),
  };
}

function invalidActClaim(parameter: Parameter): never {
  throw new InvalidPresentedToken(parameter, 'stored act claim has an unexpected shape');
}

/** RFC 7800 `cnf` with the members Tether writes: RFC 8705 §3.1 `x5t#S256`, RFC 9449 §6.1 `jkt`. */
function confirmationOf(cnf: unknown): ExchangeableToken['confirmation'] | undefined {
  if (cnf === undefined) return {};
  if (typeof cnf !== 'object' || cnf === null) return undefined;
  const { 'x5t#S256': x5t, jkt } = cnf as Record<string, unknown>;
  if ((x5t !== undefined && typeof x5t !== 'string') || (jkt !== undefined && typeof jkt !== 'string')) return undefined;
  return { x5t: x5t as string | undefined, jkt: jkt as string | undefined };
}

/** RFC 8693 §4.1: an object with a string `sub`, possibly nesting the previous `act`. */
export function actClaimOf(value: unknown): ActClaim | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { sub, act } = value as Record<string, unknown>;
  if (typeof sub !== 'string') return undefined;
  if (act === undefined) return { sub };
  const nested = actClaimOf(act);
  return nested ? { sub, act: nested } : undefined;
}

/** RFC 8693 §4.4 `may_act`; anything but an object with a string `sub` is ignored (it grants nothing). */
function mayActOf(value: unknown): { sub?: string } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { sub } = value as Record<string, unknown>;
  return typeof sub === 'string' ? { sub } : undefined;
}

/**
 * The token must have its ledger row ("no token without a record"), and neither it nor any ancestor
 * it was exchanged from may be revoked: revoking a token revokes what was derived from it, even if
 * a derived row has not been marked yet.
 */
async function requireActiveInLedger(standingOf: PresentedTokenDependencies['standingOf'], token: ExchangeableToken, parameter: Parameter): Promise<void> {
  const { record, revokedAncestorId } = await databaseStep(() => standingOf(token.tokenId));
  if (!record) throw new InvalidPresentedToken(parameter, `token ${token.tokenId} has no ledger record`);
  if (record.revokedAt) throw new InvalidPresentedToken(parameter, `token ${token.tokenId} is revoked`);
  if (revokedAncestorId) throw new InvalidPresentedToken(parameter, `token ${token.tokenId} descends from revoked token ${revokedAncestorId}`);
}

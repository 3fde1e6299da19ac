import { decodeJwt } from 'jose';
import type { ClientConfig, MappingRuleConfig } from '../config/schema.js';
import type { ActClaim, ExchangeableToken } from '../grants/token_exchange/exchange_policy.js';
import { InvalidPresentedToken } from '../grants/token_exchange/exchange_policy.js';
import { Refusal } from '../oauth/refusal.js';
import type { ExtraClaims } from '../provider/token_extra.js';
import type { ExternalIdentity } from './federation_errors.js';
import { issuerUnavailable } from './federation_errors.js';
import { IssuerUnavailableError } from './issuer_keys.js';
import { claimsMatch, ExternalTokenRefused, type ExternalTokenVerifier, type VerifiedExternalToken } from './verify_external_token.js';

/**
 * Federated subject tokens in token exchange (RFC 8693 §2.1 `subject_token_type` `…:jwt`,
 * `…:id_token` or `…:access_token`, issued by a trusted issuer; docs/federation.md): the token is
 * verified (verify_external_token.ts), then the issuer's mapping rules (`subjectTokens`) decide
 * which Tether principal its subject becomes, which clients may present it and which targets and
 * scopes it may give. The result is an {@link ExchangeableToken} with `external` set, and the
 * exchange policy (grants/token_exchange/exchange_policy.ts) decides on it like on any other —
 * target, scopes, expiry, binding, chain depth — with {@link requireMappedPresenter} in place of
 * the own-or-delegated check and the rule's targets in place of the subject token's scopes.
 */

/** What a mapping rule made of a verified external token. */
export interface MappedExternalSubject {
  identity: ExternalIdentity;
  /** The Tether principal (`sub` of the new token), per the rule. */
  principal: string;
  /** Clients that may present it (the rule's `clients`). */
  presentableBy: readonly string[];
  /** resource URI → scopes the external subject may obtain there (the rule's `targets`). */
  targets: Readonly<Record<string, readonly string[]>>;
}

/** True when a presented subject token is a trusted external issuer's (by its unverified `iss`); Tether's own issuer is never one. */
export function isExternalSubjectToken(verifier: ExternalTokenVerifier, value: string): boolean {
  try {
    return verifier.isTrustedIssuer(decodeJwt(value).iss);
  } catch {
    return false;
  }
}

/**
 * Verifies an external subject token and maps it. Refusals: InvalidPresentedToken (→ invalid_grant),
 * or 503 when the issuer's keys cannot be obtained.
 */
export async function resolveExternalSubjectToken(verifier: ExternalTokenVerifier, value: string): Promise<ExchangeableToken> {
  let verified: VerifiedExternalToken;
  try {
    verified = await verifier.verify(value);
  } catch (error) {
    if (error instanceof IssuerUnavailableError) throw issuerUnavailable(error);
    if (error instanceof ExternalTokenRefused) throw new InvalidPresentedToken('subject_token', error.message);
    throw error;
  }
  const mapped = mapExternalSubject(verified);
  const { claims } = verified;
  return {
    tokenId: verified.tokenId,
    format: 'jwt',
    clientId: mapped.principal,
    subject: mapped.principal,
    audience: verified.audience,
    scopes: [],
    expiresAt: new Date(claims.exp * 1000),
    confirmation: confirmationOf(claims.cnf),
    act: actOf(claims.act),
    external: mapped,
  };
}

/** The first of the issuer's rules whose `subject` (exact) and `claims` (subset) match; none → invalid_grant. */
export function mapExternalSubject({ issuer, claims, tokenId }: VerifiedExternalToken): MappedExternalSubject {
  const rule = issuer.subjectTokens.find((candidate) => ruleMatches(candidate, claims));
  if (!rule) {
    throw new InvalidPresentedToken('subject_token', `no subjectTokens rule of ${issuer.issuer} matches subject ${JSON.stringify(claims.sub).slice(0, 160)}`);
  }
  return {
    identity: { issuer: issuer.issuer, subject: claims.sub, tokenId },
    principal: rule.principal.replaceAll('{sub}', claims.sub),
    presentableBy: rule.clients,
    targets: rule.targets,
  };
}

function ruleMatches(rule: MappingRuleConfig, claims: VerifiedExternalToken['claims']): boolean {
  return (rule.subject === undefined || rule.subject === claims.sub) && claimsMatch(claims, rule.claims);
}

/** Only the clients a rule lists may present a token it maps (a leaked external token is no one else's to exchange). */
export function requireMappedPresenter(subject: MappedExternalSubject, client: ClientConfig): { kind: 'federated' } {
  if (subject.presentableBy.includes(client.id)) return { kind: 'federated' };
  throw new InvalidPresentedToken('subject_token', `client ${client.id} may not present tokens of ${subject.identity.issuer} subject ${JSON.stringify(subject.identity.subject).slice(0, 160)} (rule clients: ${subject.presentableBy.join(', ')})`);
}

/**
 * RFC 8693 §2.2.2 invalid_target: the rule gives the external subject no token for this target.
 * Otherwise its scopes there, which stand in for the subject token's scopes: the new token has at
 * most these, and at most what the client may obtain there by exchange.
 */
export function mappedScopesAt(subject: MappedExternalSubject, target: string): readonly string[] {
  const scopes = subject.targets[target];
  if (scopes === undefined) {
    throw new Refusal('invalid_target', 'the subject token may not be exchanged for the requested resource', `no target ${JSON.stringify(target)} in the subjectTokens rule of ${subject.identity.issuer} for ${JSON.stringify(subject.identity.subject).slice(0, 160)}`);
  }
  return scopes;
}

/**
 * The new token names where its subject came from (docs/token-exchange.md "Federated subject
 * tokens"): `external_subject` { iss, sub } of the external token.
 */
export function externalSubjectClaim(subject: MappedExternalSubject): Pick<ExtraClaims, 'external_subject'> {
  return { external_subject: { iss: subject.identity.issuer, sub: subject.identity.subject } };
}

/** A confirmation the external token carries (RFC 7800 cnf: RFC 8705 x5t#S256, RFC 9449 jkt): the caller must hold that key. */
function confirmationOf(cnf: unknown): ExchangeableToken['confirmation'] {
  if (typeof cnf !== 'object' || cnf === null) return {};
  const { 'x5t#S256': x5t, jkt } = cnf as Record<string, unknown>;
  return { ...(typeof x5t === 'string' ? { x5t } : {}), ...(typeof jkt === 'string' ? { jkt } : {}) };
}

/** An `act` chain in the external token counts towards the chain depth like Tether's own. */
function actOf(value: unknown): ActClaim | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { sub, act } = value as Record<string, unknown>;
  if (typeof sub !== 'string') return undefined;
  const nested = actOf(act);
  return nested ? { sub, act: nested } : { sub };
}

import type { ClientConfig, ResourceConfig } from '../../config/schema.js';
import { externalSubjectClaim, mappedScopesAt, requireMappedPresenter, type MappedExternalSubject } from '../../federation/subject_tokens.js';
import type { ExternalIdentity } from '../../ledger/events.js';
import { Refusal } from '../../oauth/refusal.js';
import { scopesOf } from '../../oauth/scope.js';
import type { ResourceRegistry } from '../../provider/config_snapshot.js';
import type { ExtraClaims } from '../../provider/token_extra.js';
import { TARGET_REFUSALS } from '../resource_policy.js';
import type { ExchangeRequest } from './parse_request.js';

/**
 * Step 3 of token exchange: Tether's exchange policy as pure functions over facts already
 * established (the request, the verified subject and actor tokens, the keys presented on this
 * request). Read top to bottom, {@link decideExchange} is the checklist; each check is a named
 * function that either passes or throws the refusal the client should see.
 *
 * Refusals: {@link InvalidPresentedToken} → `invalid_grant`; any other Refusal → the code it names.
 */

/** RFC 8693 §4.1 `act`: the acting party, and (nested) whoever acted before it. */
export interface ActClaim {
  sub: string;
  act?: ActClaim;
}

/** A Tether-issued access token whose signature / stored record has been verified (resolve_subject.ts). */
export interface ExchangeableToken {
  /** jti for JWTs; SHA-256 of the id for opaque tokens (as the ledger stores it). */
  tokenId: string;
  format: 'jwt' | 'opaque';
  /** The client the token was issued to (`client_id`). */
  clientId: string;
  /** `sub`: the client for a client_credentials token, the original subject for an exchanged one. */
  subject: string;
  audience: string;
  scopes: string[];
  expiresAt: Date;
  /** `cnf` (RFC 8705 §3.1 `x5t#S256`, RFC 9449 §6.1 `jkt`); empty for a bearer token. */
  confirmation: { x5t?: string; jkt?: string };
  act?: ActClaim;
  /** RFC 8693 §4.4 `may_act`: who the subject says may act for it. */
  mayAct?: { sub?: string };
  /** A trusted external issuer's token, mapped by its rules (federation/subject_tokens.ts); `subject` is the mapped principal. */
  external?: MappedExternalSubject;
}

/** Sender-constraint keys the caller demonstrated on this request. */
export interface PresentedKeys {
  /** SHA-256 thumbprint of the TLS client certificate (RFC 8705 §3.1). */
  certificateThumbprint?: string;
  /** JWK thumbprint of a valid DPoP proof on this request (RFC 9449 §4.3). */
  dpopJkt?: string;
}

/**
 * A subject or actor token that cannot be exchanged: forged, expired, revoked, unknown, or not this
 * client's to present. One generic description for all of them, so that a client holding a stolen
 * token learns nothing about why; the reason goes to the ledger and logs.
 */
export class InvalidPresentedToken extends Refusal {
  override name = 'InvalidPresentedToken';

  constructor(
    readonly parameter: 'subject_token' | 'actor_token',
    reason: string,
  ) {
    super('invalid_grant', `${parameter} is invalid, expired, revoked, or not acceptable for this client`, reason);
  }
}

/** How the requesting client stands to the subject token (RFC 8693 §1.1). */
export type SubjectRelation =
  | { kind: 'own' }
  | { kind: 'delegation'; basis: 'act_for' | 'may_act' }
  /** A trusted external issuer's token, presented by a client its mapping rule lists (docs/federation.md). */
  | { kind: 'federated' };

export interface ExchangeInput {
  request: ExchangeRequest;
  subject: ExchangeableToken;
  actor?: ExchangeableToken;
  client: ClientConfig;
  presented: PresentedKeys;
  registry: ResourceRegistry;
  maxChainDepth: number;
  now: Date;
}

export interface ExchangeDecision {
  resource: ResourceConfig;
  scopes: string[];
  /** The new token's `sub` (RFC 8693 delegation semantics: the subject token's subject). */
  subject: string;
  act?: ActClaim;
  lifetimeSeconds: number;
  /** The new token must not outlive the subject token. */
  notAfter: Date;
  relation: SubjectRelation;
  /** Federation: the external identity behind the subject token, and the claims that name it in the new token. */
  external?: ExternalIdentity;
  claims?: Pick<ExtraClaims, 'external_subject'>;
}

/** The checklist, in the order a refusal is reported. */
export function decideExchange(input: ExchangeInput): ExchangeDecision {
  const { request, subject, actor, client, presented } = input;

  const relation = subject.external ? requireMappedPresenter(subject.external, client) : requirePresentableBy(subject, client);
  requireAudienceServedByDelegate(subject, client, relation, input.registry);
  requireSenderConstraintKept(subject, client, presented, relation);
  requireBindingNotWeakened(subject, client);
  if (actor) requireActorIsRequester(actor, client, presented);

  const resource = selectExchangeTarget(request.target, request.targetParameter, client, input.registry);
  const subjectScopes = subject.external ? mappedScopesAt(subject.external, resource.uri) : subject.scopes;
  const scopes = selectExchangeScopes(request.scope, subjectScopes, client.exchange.targets[resource.uri]!);
  const act = nextActClaim(subject, client, relation);
  requireChainDepth(act, input.maxChainDepth);
  const { lifetimeSeconds, notAfter } = exchangeExpiry(resource.lifetime, subject.expiresAt, input.now);

  return {
    resource, scopes, subject: subject.subject, act, lifetimeSeconds, notAfter, relation,
    ...(subject.external ? { external: subject.external.identity, claims: externalSubjectClaim(subject.external) } : {}),
  };
}

/**
 * Who may present the subject token: the client it was issued to, or a client allowed to act for
 * that client — by configuration (`exchange.actFor`) or by the token itself (RFC 8693 §4.4 `may_act`
 * naming this client). Anyone else holds a token that is not theirs: invalid_grant.
 */
export function requirePresentableBy(subject: ExchangeableToken, client: ClientConfig): SubjectRelation {
  if (subject.clientId === client.id) return { kind: 'own' };
  if (client.exchange.actFor.includes(subject.clientId)) return { kind: 'delegation', basis: 'act_for' };
  if (subject.mayAct?.sub === client.id) return { kind: 'delegation', basis: 'may_act' };
  throw new InvalidPresentedToken('subject_token', `client ${client.id} may not act for client ${subject.clientId}`);
}

/**
 * A client acting for another exchanges only a token that was sent to it: the subject token's `aud`
 * must be a resource this client serves (`resources[].servedBy`). RFC 8693 §2.1 has the server apply
 * "the appropriate validation procedures for the indicated token type", and for an access token that
 * includes its audience (RFC 7519 §4.1.3: a recipient that does not identify itself with `aud` must
 * reject it; RFC 9068 §4). Without this check a delegate could turn any leaked token of the client it
 * acts for — issued for some other API — into one of its own (the class of Keycloak #52691; RFC 8693
 * §5 on the abuse of delegated rights).
 *
 * A client exchanging its own token is not checked: the token was issued to it, a bound one is
 * accepted only with its key (requireSenderConstraintKept), and the result — a target from its own
 * `exchange.targets`, no more scopes, no later expiry, the same `sub` and `act` — gives it nothing
 * it did not already hold.
 */
export function requireAudienceServedByDelegate(subject: ExchangeableToken, client: ClientConfig, relation: SubjectRelation, registry: ResourceRegistry): void {
  // A federated token's audience is Tether itself (the issuer's configured `audience`, verified).
  if (relation.kind !== 'delegation') return;
  if (registry.get(subject.audience)?.servedBy.includes(client.id)) return;
  throw new InvalidPresentedToken('subject_token', `subject token ${subject.tokenId} is for ${subject.audience}, which client ${client.id} does not serve (resources[].servedBy)`);
}

/**
 * DESIGN "every token is sender-constrained": an exchange must never turn a stolen bound token into
 * one bound to the thief. A bound subject token is accepted from the holder of its key — the same
 * certificate on this TLS connection (RFC 8705 §3) or a DPoP proof on this request by the same key
 * (RFC 9449 §4.3) — or from a client that the configuration explicitly trusts to exchange tokens it
 * was handed by the client it acts for (`exchange.actFor` together with `acceptBoundSubjectTokens`).
 * `may_act` alone does not lift the binding: it is the subject's statement, not the operator's.
 */
export function requireSenderConstraintKept(subject: ExchangeableToken, client: ClientConfig, presented: PresentedKeys, relation: SubjectRelation): void {
  if (holdsKeyOf(subject, presented)) return;
  const trustedDelegate = relation.kind === 'delegation' && relation.basis === 'act_for' && client.exchange.acceptBoundSubjectTokens;
  if (trustedDelegate) return;
  throw new InvalidPresentedToken('subject_token', boundTokenReason(subject, client, relation));
}

/**
 * A bound subject token never becomes a bearer token: a client whose tokens are unbound (binding
 * `none`, legacy resources only) cannot exchange one, whoever holds the key.
 */
export function requireBindingNotWeakened(subject: ExchangeableToken, client: ClientConfig): void {
  const bound = subject.confirmation.x5t !== undefined || subject.confirmation.jkt !== undefined;
  if (bound && client.binding === 'none') {
    throw new InvalidPresentedToken('subject_token', `bound subject token ${subject.tokenId} would become a bearer token for client ${client.id}`);
  }
}

/** True when the token is unbound, or every confirmation it carries was demonstrated on this request. */
export function holdsKeyOf(token: ExchangeableToken, presented: PresentedKeys): boolean {
  const { x5t, jkt } = token.confirmation;
  if (x5t !== undefined && presented.certificateThumbprint !== x5t) return false;
  if (jkt !== undefined && presented.dpopJkt !== jkt) return false;
  return true;
}

function boundTokenReason(subject: ExchangeableToken, client: ClientConfig, relation: SubjectRelation): string {
  const key = subject.confirmation.x5t !== undefined ? 'certificate' : 'DPoP key';
  const why = relation.kind === 'own'
    ? 'its own token, presented without the key it is bound to'
    : relation.kind === 'federated'
      ? 'an external token, presented without the key its cnf names'
      : relation.basis === 'may_act'
      ? 'may_act does not allow exchanging a bound token without its key'
      : 'exchange.acceptBoundSubjectTokens is off';
  return `subject token ${subject.tokenId} is bound to another ${key}; client ${client.id}: ${why}`;
}

/**
 * RFC 8693 §2.1 `actor_token`: the acting party. In Tether the actor is always the authenticated
 * client (it acts for the subject), so an actor token adds a proof, never another identity: it must
 * be this client's own token, presented with its key. Anything else is an invalid actor token.
 */
export function requireActorIsRequester(actor: ExchangeableToken, client: ClientConfig, presented: PresentedKeys): void {
  if (actor.clientId !== client.id) {
    throw new InvalidPresentedToken('actor_token', `actor token of client ${actor.clientId} presented by client ${client.id}`);
  }
  if (!holdsKeyOf(actor, presented)) {
    throw new InvalidPresentedToken('actor_token', `actor token ${actor.tokenId} presented without the key it is bound to`);
  }
}

/**
 * RFC 8693 §2.2.2: a target the server will not issue for → invalid_target. The target must be a
 * registered resource (exact string, RFC 8707 §2) that this client may obtain by exchange.
 */
export function selectExchangeTarget(target: string, parameter: ExchangeRequest['targetParameter'], client: ClientConfig, registry: ResourceRegistry): ResourceConfig {
  const resource = registry.get(target);
  if (!resource) {
    throw new Refusal('invalid_target', EXCHANGE_TARGET_REFUSALS.unknown[parameter], `unknown exchange target ${JSON.stringify(target)} (${parameter})`);
  }
  if (!(target in client.exchange.targets)) {
    throw new Refusal('invalid_target', EXCHANGE_TARGET_REFUSALS.notPermitted, `exchange target ${target} is not permitted for client ${client.id} (not in exchange.targets)`);
  }
  return resource;
}

/** Public descriptions of the exchange's own invalid_target refusals (parse_request.ts has missing and several). */
const EXCHANGE_TARGET_REFUSALS = {
  unknown: {
    resource: TARGET_REFUSALS.unknown,
    audience: 'the requested audience is not a resource registered at this server',
  },
  notPermitted: 'this client may not obtain tokens for the requested resource by token exchange',
} as const;

/**
 * "Equal or fewer scopes": the new token may carry only scopes the subject token carries AND this
 * client may obtain at the target by exchange. Scope names therefore flow across audiences: a target
 * resource that declares none of the subject token's scope names yields nothing. None requested →
 * that whole intersection; an empty result is refused, never a token without scopes
 * (RFC 6749 §5.2 invalid_scope).
 */
export function selectExchangeScopes(requested: string | undefined, subjectScopes: readonly string[], exchangeable: readonly string[]): string[] {
  const allowed = subjectScopes.filter((scope) => exchangeable.includes(scope));
  const asked = [...new Set(scopesOf(requested))];
  if (asked.length === 0) {
    if (allowed.length === 0) {
      throw new Refusal('invalid_scope', 'requested scope is not allowed', `no scope is both in the subject token (${subjectScopes.join(' ')}) and exchangeable at the target (${exchangeable.join(' ')})`);
    }
    return [...new Set(allowed)];
  }
  const refused = asked.filter((scope) => !allowed.includes(scope));
  if (refused.length > 0) {
    throw new Refusal('invalid_scope', 'requested scope is not allowed', `scopes not in the subject token or not exchangeable at the target: ${refused.join(' ')}`);
  }
  return asked;
}

/**
 * RFC 8693 §4.1: when a client acts for another, the new token names it in `act`, with the previous
 * actors nested inside (the chain of delegation, most recent outermost). A client exchanging its own
 * token acts for nobody new: the chain it already carries is kept as it is.
 */
export function nextActClaim(subject: ExchangeableToken, client: ClientConfig, relation: SubjectRelation): ActClaim | undefined {
  if (relation.kind === 'own') return subject.act;
  // A workload exchanging its own external identity (principal = itself) acts for nobody new.
  if (relation.kind === 'federated' && subject.subject === client.id) return subject.act;
  return subject.act ? { sub: client.id, act: subject.act } : { sub: client.id };
}

/** Number of actors in an `act` chain (0 for none). */
export function chainDepthOf(act: ActClaim | undefined): number {
  let depth = 0;
  for (let current = act; current; current = current.act) depth += 1;
  return depth;
}

/**
 * `exchange.maxChainDepth` bounds how many actors a token may name. Going deeper is not a fault of
 * the subject token (which is valid) but a request the policy refuses: RFC 8693 §2.2.2 says a subject
 * token "unacceptable based on policy" is answered with invalid_request.
 */
export function requireChainDepth(act: ActClaim | undefined, maxChainDepth: number): void {
  const depth = chainDepthOf(act);
  if (depth > maxChainDepth) {
    throw new Refusal('invalid_request', 'the delegation chain of the subject token is too long to exchange it again', `act chain depth ${depth} exceeds exchange.maxChainDepth ${maxChainDepth}`);
  }
}

/**
 * "Never a later expiry": the target's lifetime, cut to what is left of the subject token. The
 * absolute bound is passed on as well, so that the second that may pass before the token is minted
 * cannot push it past the subject token's `exp`.
 */
export function exchangeExpiry(resourceLifetime: number, subjectExpiresAt: Date, now: Date): { lifetimeSeconds: number; notAfter: Date } {
  const remaining = Math.floor((subjectExpiresAt.getTime() - now.getTime()) / 1000);
  if (remaining < 1) {
    throw new InvalidPresentedToken('subject_token', `subject token expires at ${subjectExpiresAt.toISOString()}`);
  }
  return { lifetimeSeconds: Math.min(resourceLifetime, remaining), notAfter: subjectExpiresAt };
}

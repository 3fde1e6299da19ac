import { Refusal } from '../../oauth/refusal.js';
import { TOKEN_TYPE } from '../../oauth/token_exchange_urns.js';

/**
 * Step 1 of token exchange: the token request's RFC 8693 §2.1 parameters → a typed request, or the
 * `invalid_request` / `invalid_target` the client has earned. Pure: no token is looked at here.
 *
 * oidc-provider has already refused any parameter sent twice (`invalid_request`, "… must not be
 * provided twice"), except `resource` and `audience`, which it lets through so that this module can
 * answer them the RFC 8707 way.
 */

/** A token the client presented: `jwt` means the client asserted it is a JWT (RFC 8693 §3). */
export interface PresentedToken {
  value: string;
  /** `id_token`: only a trusted external issuer's subject token can be one (federation/subject_tokens.ts). */
  type: 'access_token' | 'jwt' | 'id_token';
}

export interface ExchangeRequest {
  subject: PresentedToken;
  actor?: PresentedToken;
  /** The one target the client named, as sent (compared to registered resource URIs as an exact string). */
  target: string;
  /** Which parameter named it: a registered resource URI is accepted as either. */
  targetParameter: 'resource' | 'audience';
  /** The `scope` parameter as sent (RFC 6749 §3.3), if any. */
  scope: string | undefined;
}

type Params = Record<string, unknown>;

export function parseExchangeRequest(params: Params): ExchangeRequest {
  const subject = presentedToken(params, 'subject_token', 'subject_token_type');
  const actor = optionalActorToken(params);
  requireAccessTokenRequested(params);
  const { target, targetParameter } = selectTargetParameter(params);
  return { subject, actor, target, targetParameter, scope: singleValue(params, 'scope') };
}

/** RFC 8693 §2.1: `subject_token` and `subject_token_type` are REQUIRED. */
function presentedToken(params: Params, valueName: string, typeName: string): PresentedToken {
  const value = requireParameter(params, valueName);
  const type = requireParameter(params, typeName);
  return { value, type: acceptedTokenType(type, typeName) };
}

/**
 * RFC 8693 §2.1: `actor_token_type` is REQUIRED when `actor_token` is present and MUST NOT be sent
 * without it.
 */
function optionalActorToken(params: Params): PresentedToken | undefined {
  const hasToken = singleValue(params, 'actor_token') !== undefined;
  const hasType = singleValue(params, 'actor_token_type') !== undefined;
  if (!hasToken && !hasType) return undefined;
  if (!hasToken) {
    throw new Refusal('invalid_request', 'actor_token_type must not be sent without actor_token', 'actor_token_type without actor_token');
  }
  return presentedToken(params, 'actor_token', 'actor_token_type');
}

/**
 * RFC 8693 §3 lists the types a server may accept; Tether accepts only access tokens it issued, named
 * either generically (`access_token`) or, for its JWT access tokens, as `jwt`. Any other type (a
 * refresh token, an ID token, SAML) is a request Tether does not support: RFC 8693 §2.2.2 → invalid_request.
 */
function acceptedTokenType(type: string, name: string): PresentedToken['type'] {
  if (type === TOKEN_TYPE.accessToken) return 'access_token';
  if (type === TOKEN_TYPE.jwt) return 'jwt';
  if (type === TOKEN_TYPE.idToken && name === 'subject_token_type') return 'id_token';
  throw new Refusal('invalid_request', `unsupported ${name}`, `${name} ${JSON.stringify(type)} is not accepted`);
}

/** RFC 8693 §2.1 `requested_token_type`: Tether issues access tokens only. */
function requireAccessTokenRequested(params: Params): void {
  const requested = singleValue(params, 'requested_token_type');
  if (requested !== undefined && requested !== TOKEN_TYPE.accessToken) {
    throw new Refusal('invalid_request', 'unsupported requested_token_type', `requested_token_type ${JSON.stringify(requested)}; only access tokens are issued`);
  }
}

/**
 * RFC 8693 §2.1 lets a client name targets by `resource` (RFC 8707 URIs) and/or `audience` (logical
 * names); Tether's names are its registered resource URIs, so either parameter may carry one. DESIGN
 * "one token, one audience": exactly one value across both. None, or more than one (even the same
 * value twice), is a target the server will not issue for: RFC 8693 §2.2.2 → invalid_target, as for
 * client_credentials.
 */
export function selectTargetParameter(params: Params): { target: string; targetParameter: 'resource' | 'audience' } {
  const named = [
    ...valuesOf(params.resource).map((target) => ({ target, targetParameter: 'resource' as const })),
    ...valuesOf(params.audience).map((target) => ({ target, targetParameter: 'audience' as const })),
  ];
  if (named.length === 0) {
    throw new Refusal('invalid_target', 'a resource or audience parameter is required', 'no resource or audience requested');
  }
  if (named.length > 1) {
    throw new Refusal('invalid_target', 'exactly one resource or audience parameter is required', `${named.length} target values requested`);
  }
  return named[0]!;
}

function requireParameter(params: Params, name: string): string {
  const value = singleValue(params, name);
  if (value === undefined) {
    throw new Refusal('invalid_request', `missing required parameter ${name}`, `${name} absent or empty`);
  }
  return value;
}

/** A parameter that may appear once; an empty value counts as absent (RFC 6749 §3.1). */
function singleValue(params: Params, name: string): string | undefined {
  const value = params[name];
  if (Array.isArray(value)) {
    // oidc-provider rejects these first; kept so the parser stands alone.
    throw new Refusal('invalid_request', `${name} parameter must not be provided twice`, `${name} repeated`);
  }
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function valuesOf(value: unknown): string[] {
  const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
  return values.filter((item): item is string => typeof item === 'string');
}

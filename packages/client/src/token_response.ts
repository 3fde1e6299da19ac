/**
 * The check of a successful token response (RFC 6749 §5.1) against what was asked for, before the
 * token is cached or used: a pure checklist, each refusal a {@link ClientError} with its own code.
 *
 * The client is not the token's audience and does not verify its signature; it checks what it can
 * see, so that it never holds a token that is not the one it asked for:
 * 1. the answer is a token response: `access_token` in token68 syntax, a known `token_type`;
 * 2. it is bound the way this client binds (`token_type`, and a JWT's `cnf`);
 * 3. a JWT is for exactly the requested resource (`aud`);
 * 4. no scope beyond the requested ones (the `scope` member, and a JWT's `scope`/`scp`);
 * 5. it is not expired; its expiry is the earliest of `expires_in`, a JWT's `exp` and any bound given.
 *
 * @module
 */
import { decodeJwt, type JWTPayload } from 'jose';
import type { AccessToken } from './access_token.js';
import { isScopeSubset, parseScopeString, type NormalizedAccessRequest } from './access_request.js';
import { ClientError } from './errors.js';

/** How this client's tokens must be bound. */
export type BindingExpectation =
  | { readonly method: 'dpop'; readonly jkt: string }
  | { readonly method: 'mtls'; readonly x5tS256: string }
  | { readonly method: 'bearer' };

/** What the answer is checked against. */
export interface ExpectedToken {
  readonly request: NormalizedAccessRequest;
  readonly binding: BindingExpectation;
  /** When the request was sent (epoch ms); `expires_in` counts from here. */
  readonly obtainedAt: number;
  /** Now (epoch ms). */
  readonly now: number;
  /** An RFC 8693 exchange: `issued_token_type` must say access token (§2.2.1). */
  readonly exchange?: boolean;
  /** The token may not be used beyond this (epoch ms): an exchanged token's subject token expiry. */
  readonly notAfter?: number;
}

export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// RFC 6750 §2.1 / RFC 9449 §7.1: b64token / token68 — also keeps CR, LF and spaces out of headers.
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
const MAX_TOKEN_LENGTH = 16 * 1024;

/** Checks `body` and returns the token it holds; throws a {@link ClientError} saying what is wrong. */
export function acceptTokenResponse(body: Record<string, unknown>, expected: ExpectedToken): AccessToken {
  const value = body.access_token;
  if (typeof value !== 'string' || value.length > MAX_TOKEN_LENGTH || !TOKEN68.test(value)) {
    throw invalid('the token response has no access_token in token68 syntax');
  }
  const type = tokenTypeOf(body.token_type);
  // RFC 8693 §2.2.1: issued_token_type is required in an exchange response.
  if (expected.exchange && body.issued_token_type !== ACCESS_TOKEN_TYPE) {
    throw invalid('the exchange response does not say it issued an access token (issued_token_type)');
  }
  const claims = jwtClaimsOf(value);
  checkBinding(type, claims, expected.binding);
  if (claims !== undefined) checkAudience(claims, expected.request.resource);
  const scopes = grantedScopes(body, claims, expected.request.scopes);
  const expiresAt = expiryOf(body, claims, expected);
  return { value, type, resource: expected.request.resource, scopes, obtainedAt: expected.obtainedAt, expiresAt, claims };
}

function tokenTypeOf(tokenType: unknown): 'Bearer' | 'DPoP' {
  // RFC 6749 §5.1: token_type is case-insensitive.
  const lower = typeof tokenType === 'string' ? tokenType.toLowerCase() : undefined;
  if (lower === 'bearer') return 'Bearer';
  if (lower === 'dpop') return 'DPoP';
  throw invalid('the token response has no token_type Bearer or DPoP');
}

/** The payload of a JWS compact serialization, `undefined` for anything else (an opaque or encrypted token). */
function jwtClaimsOf(value: string): JWTPayload | undefined {
  if (value.split('.').length !== 3) return undefined;
  try {
    return decodeJwt(value);
  } catch {
    return undefined;
  }
}

function checkBinding(type: 'Bearer' | 'DPoP', claims: JWTPayload | undefined, binding: BindingExpectation): void {
  const cnf = claims?.cnf as Record<string, unknown> | undefined;
  switch (binding.method) {
    case 'dpop':
      // RFC 9449 §5: a DPoP-bound token is answered with token_type DPoP; a Bearer one would be unbound.
      if (type !== 'DPoP') throw new ClientError('ERR_TOKEN_BINDING', 'a DPoP-bound token was asked for and the answer is not token_type DPoP');
      // RFC 9449 §6.1: the key a JWT is bound to.
      if (claims !== undefined && cnf?.jkt !== binding.jkt) throw new ClientError('ERR_TOKEN_BINDING', 'the token is not bound to this client\'s DPoP key (cnf.jkt)');
      return;
    case 'mtls':
      if (type !== 'Bearer') throw new ClientError('ERR_TOKEN_BINDING', 'a certificate-bound token was asked for and the answer is not token_type Bearer');
      // RFC 8705 §3.1: the certificate a JWT is bound to.
      if (claims !== undefined && cnf?.['x5t#S256'] !== binding.x5tS256) throw new ClientError('ERR_TOKEN_BINDING', 'the token is not bound to this client\'s certificate (cnf.x5t#S256)');
      return;
    case 'bearer':
      if (type !== 'Bearer') throw new ClientError('ERR_TOKEN_BINDING', 'a bearer token was asked for and the answer is token_type DPoP');
      if (cnf !== undefined) throw new ClientError('ERR_TOKEN_BINDING', 'a bearer token was asked for and the token is bound (cnf)');
  }
}

/** RFC 8707 §2 / RFC 9068 §3: `aud` is exactly the resource — one string, or a list holding only it. */
function checkAudience(claims: JWTPayload, resource: string): void {
  const { aud } = claims;
  const only = Array.isArray(aud) && aud.length === 1 ? aud[0] : aud;
  if (only !== resource) throw new ClientError('ERR_TOKEN_AUDIENCE', `the token is not for ${resource} (aud)`);
}

/** The granted scopes, each of which must have been requested (RFC 6749 §3.3). */
function grantedScopes(body: Record<string, unknown>, claims: JWTPayload | undefined, requested: readonly string[]): string[] {
  const stated: string[][] = [];
  if (body.scope !== undefined) stated.push(scopeMember(body.scope, 'the token response\'s scope'));
  if (claims?.scope !== undefined) stated.push(scopeMember(claims.scope, 'the token\'s scope claim'));
  // `scp` as a list: a common alternative spelling of the scope claim.
  if (claims?.scp !== undefined) {
    const scp = claims.scp;
    stated.push(Array.isArray(scp) ? scopeMember(scp.join(' '), 'the token\'s scp claim') : scopeMember(scp, 'the token\'s scp claim'));
  }
  for (const scopes of stated) {
    if (!isScopeSubset(scopes, requested)) throw new ClientError('ERR_TOKEN_SCOPE', 'the token carries a scope that was not requested');
  }
  // RFC 6749 §5.1: no `scope` member means the requested ones were granted.
  return stated[0] ?? [...requested];
}

function scopeMember(value: unknown, what: string): string[] {
  const scopes = typeof value === 'string' ? parseScopeString(value) : undefined;
  if (scopes === undefined) throw invalid(`${what} is not a space-separated list of scope tokens`);
  return scopes;
}

function expiryOf(body: Record<string, unknown>, claims: JWTPayload | undefined, expected: ExpectedToken): number | undefined {
  const bounds: number[] = [];
  const expiresIn = expiresInOf(body.expires_in);
  if (expiresIn !== undefined) bounds.push(expected.obtainedAt + expiresIn * 1000);
  if (claims?.exp !== undefined) {
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw invalid('the token\'s exp is not a number');
    bounds.push(claims.exp * 1000);
  }
  // Without a stated lifetime, a bound from elsewhere does not make the token cacheable.
  if (bounds.length === 0) return undefined;
  if (expected.notAfter !== undefined) bounds.push(expected.notAfter);
  const expiresAt = Math.min(...bounds);
  if (expiresAt <= expected.now) throw new ClientError('ERR_TOKEN_EXPIRED', 'the token is already expired');
  return expiresAt;
}

/** RFC 6749 §5.1: seconds, a number (a string of digits is taken too, as some servers send one). */
function expiresInOf(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const seconds = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) throw invalid('the token response\'s expires_in is not a number');
  if (seconds <= 0) throw new ClientError('ERR_TOKEN_EXPIRED', 'the token response says the token is already expired (expires_in)');
  return seconds;
}

function invalid(message: string): ClientError {
  return new ClientError('ERR_TOKEN_RESPONSE_INVALID', message);
}

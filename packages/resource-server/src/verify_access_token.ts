/**
 * The JWT access token itself (RFC 9068 on top of RFC 7515/7519): its shape, header, signature and
 * claims, and the translation of every failure into a stable {@link VerifierError} code. Binding,
 * revocation and scopes are checked by the verifier afterwards.
 *
 * The key is selected and imported by jose (jwks_cache.ts); the signature is checked with
 * node:crypto's synchronous verify (signed_jws.ts, jws_signature.ts), and the registered claims here, in the order
 * and with the rules `jose.jwtVerify` applies (its `typ`, `issuer`, `audience`, `requiredClaims`,
 * `clockTolerance` options), plus the rules jose does not have.
 *
 * @module
 */
import { typIs, type JsonObject } from './compact_jws.js';
import { VerifierError, type VerifierErrorCode } from './errors.js';
import type { KeyResolver } from './jwks_cache.js';
import { verifySignedJws, type SignedJwsRules } from './signed_jws.js';

/** The confirmation claim (RFC 7800 §3.1) with the members Tether issues. */
export interface Confirmation {
  /** RFC 8705 §3.1: base64url SHA-256 thumbprint of the DER client certificate. */
  readonly 'x5t#S256'?: string;
  /** RFC 9449 §6.1: base64url SHA-256 JWK thumbprint (RFC 7638) of the DPoP key. */
  readonly jkt?: string;
  readonly [member: string]: unknown;
}

/** The claims of a validated access token (RFC 9068 §2.2); other claims pass through unchanged. */
export interface AccessTokenClaims {
  readonly iss: string;
  /** Always a single string equal to the configured audience. */
  readonly aud: string;
  readonly sub: string;
  readonly client_id: string;
  readonly jti: string;
  readonly exp: number;
  readonly iat: number;
  readonly nbf?: number;
  /** Space-separated scopes (RFC 9068 §2.2.3, RFC 8693 §4.2). */
  readonly scope?: string;
  readonly cnf?: Confirmation;
  readonly [claim: string]: unknown;
}

/** What the token checks need from the configuration. */
export interface AccessTokenRules {
  readonly issuer: string;
  readonly audience: string;
  readonly clockToleranceSeconds: number;
  /** The size limit, the algorithms and the memo of verified signatures (signed_jws.ts). */
  readonly jws: SignedJwsRules;
}

/**
 * Checks the token's shape, header and signature with the issuer key (signed_jws.ts), then `typ`,
 * `iss`, `aud`, `exp` and `nbf`; returns the claims for {@link checkAccessTokenClaims}. `now` is in
 * milliseconds.
 */
export async function verifyAccessTokenJwt(token: string, rules: AccessTokenRules, keys: KeyResolver, now: number): Promise<JsonObject> {
  const { header, payload } = await verifySignedJws(token, rules.jws, keys.getKey);
  // RFC 9068 §4: `typ` must be `at+jwt` (media types compare as RFC 7515 §4.1.9 says), which is
  // what tells an access token from an ID token.
  if (!typIs(header.typ, 'at+jwt')) throw failure('ERR_TOKEN_TYPE');
  checkRegisteredClaims(payload, rules, Math.floor(now / 1000));
  return payload;
}

/**
 * RFC 7519 §4.1 and RFC 9068 §2.2 as `jose.jwtVerify` applies them: `iss`, `aud`, `iat` and `exp`
 * present, `iss` equal to the issuer, `aud` naming this API, `iat` a number, `nbf` (when present)
 * not after `now` and `exp` after it, both within the leeway. `now` is in whole seconds.
 */
function checkRegisteredClaims(payload: JsonObject, rules: AccessTokenRules, now: number): void {
  if (!('iss' in payload) || payload.iss !== rules.issuer) throw failure('ERR_TOKEN_ISSUER');
  // A single string or an array holding it, as jose accepts; checkAccessTokenClaims then refuses arrays.
  const { aud } = payload;
  if (!(aud === rules.audience || (Array.isArray(aud) && aud.includes(rules.audience)))) throw failure('ERR_TOKEN_AUDIENCE');
  if (!('iat' in payload) || typeof payload.iat !== 'number') throw claimInvalid('iat');
  if (!('exp' in payload)) throw claimInvalid('exp');
  const tolerance = rules.clockToleranceSeconds;
  if (payload.nbf !== undefined) {
    if (typeof payload.nbf !== 'number') throw claimInvalid('nbf');
    if (payload.nbf > now + tolerance) throw failure('ERR_TOKEN_NOT_YET_VALID');
  }
  if (typeof payload.exp !== 'number') throw claimInvalid('exp');
  if (payload.exp <= now - tolerance) throw failure('ERR_TOKEN_EXPIRED');
}

function failure(code: keyof typeof MESSAGES): VerifierError {
  return new VerifierError(code, MESSAGES[code]);
}

function claimInvalid(claim: string): VerifierError {
  return new VerifierError('ERR_TOKEN_CLAIM_INVALID', `access token has no valid ${claim}`);
}

const MESSAGES = {
  ERR_TOKEN_EXPIRED: 'access token has expired',
  ERR_TOKEN_TYPE: 'token is not an access token (typ must be at+jwt)',
  ERR_TOKEN_ISSUER: 'access token issuer is not trusted',
  ERR_TOKEN_AUDIENCE: 'access token is not meant for this resource',
  ERR_TOKEN_NOT_YET_VALID: 'access token is not yet valid',
} as const satisfies Partial<Record<VerifierErrorCode, string>>;

/**
 * The claim rules of RFC 9068 §4 and RFC 7519 §4.1 beyond `jose.jwtVerify`'s; `now` is in seconds.
 *
 * `aud` must be one string equal to this API's audience (jose also accepts an array containing it).
 * An array is refused even when it contains only the audience: Tether mints every token for exactly
 * one resource (RFC 8707), so a multi-audience token was not minted by Tether for this API, and
 * accepting one would let a token meant for several services be replayed at each of them.
 */
export function checkAccessTokenClaims(payload: JsonObject, rules: AccessTokenRules, now: number): AccessTokenClaims {
  if (typeof payload.aud !== 'string' || payload.aud !== rules.audience) {
    throw new VerifierError('ERR_TOKEN_AUDIENCE', 'access token is not meant for this resource');
  }
  // Checked above to be numbers; `1e400` is one (Infinity), and would never expire.
  for (const claim of ['exp', 'nbf', 'iat'] as const) {
    if (payload[claim] !== undefined && !isNumericDate(payload[claim])) {
      throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', `access token has no valid ${claim}`);
    }
  }
  // A token issued in the future comes from a skewed or forged clock (RFC 7519 §4.1.6).
  if ((payload.iat as number) > now + rules.clockToleranceSeconds) throw new VerifierError('ERR_TOKEN_IAT', 'access token was issued in the future');
  // RFC 9068 §2.2: sub, client_id and jti are required.
  for (const claim of ['sub', 'client_id', 'jti'] as const) {
    const value = payload[claim];
    if (typeof value !== 'string' || value.length === 0) {
      throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', `access token has no valid ${claim}`);
    }
  }
  if (payload.scope !== undefined && typeof payload.scope !== 'string') {
    throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token scope is not a string');
  }
  if (payload.cnf !== undefined && (typeof payload.cnf !== 'object' || payload.cnf === null || Array.isArray(payload.cnf))) {
    throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token cnf is not an object');
  }
  return payload as AccessTokenClaims;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * RFC 6750 §3.1 / RFC 9068 §4: every required scope must be among the token's space-separated
 * `scope` values, otherwise the answer is 403 `insufficient_scope`.
 */
export function checkScopes(claims: AccessTokenClaims, required: readonly string[] | undefined): void {
  if (required === undefined || required.length === 0) return;
  const granted = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
  for (const scope of required) {
    if (!granted.includes(scope)) {
      throw new VerifierError('ERR_TOKEN_SCOPE', 'access token lacks a required scope', { requiredScopes: required });
    }
  }
}

/**
 * The JWT access token itself (RFC 9068 on top of RFC 7515/7519): header rules, signature, claims.
 * Binding, revocation and scopes are checked by the verifier afterwards.
 *
 * @module
 */
import { verifySignature, type SupportedAlgorithm } from './algorithms.js';
import { decodeJsonPayload, parseCompactJws, typIs, type JsonObject, type JwsErrorCodes } from './compact_jws.js';
import { VerifierError } from './errors.js';
import type { KeyResolver } from './jwks_cache.js';

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
  readonly algorithms: ReadonlySet<string>;
  readonly clockToleranceSeconds: number;
  readonly maxTokenBytes: number;
}

const TOKEN_CODES: JwsErrorCodes = { tooLarge: 'ERR_TOKEN_TOO_LARGE', malformed: 'ERR_TOKEN_MALFORMED', encrypted: 'ERR_TOKEN_ENCRYPTED' };

/**
 * Parses the token, checks its header, resolves the issuer key and verifies the signature; returns
 * the (not yet validated) payload.
 */
export async function verifyAccessTokenSignature(token: string, rules: AccessTokenRules, keys: KeyResolver): Promise<JsonObject> {
  const jws = parseCompactJws(token, rules.maxTokenBytes, TOKEN_CODES, 'access token');
  const { alg, kid } = checkAccessTokenHeader(jws.header, rules.algorithms);
  const key = await keys.getKey(alg, kid);
  if (!(await verifySignature(alg, key, jws.signature, jws.signingInput))) {
    throw new VerifierError('ERR_TOKEN_SIGNATURE', 'access token signature is invalid');
  }
  return decodeJsonPayload(jws, 'ERR_TOKEN_MALFORMED', 'access token');
}

/**
 * The header rules. `jku`, `x5u`, `jwk` and `x5c` are deliberately not looked at: the key comes
 * from the issuer's JWKS alone.
 */
function checkAccessTokenHeader(header: JsonObject, algorithms: ReadonlySet<string>): { alg: SupportedAlgorithm; kid: string | undefined } {
  const { alg, kid } = header;
  // RFC 8725 §3.1: only the algorithms configured for this issuer; the comparison is exact, so
  // `none`, `None` and `nOnE` all fail here (and `none` can never be configured).
  if (typeof alg !== 'string' || !algorithms.has(alg)) {
    throw new VerifierError('ERR_TOKEN_ALGORITHM', 'access token algorithm is not allowed');
  }
  // RFC 7515 §4.1.11: we understand no extension, so any `crit` must be refused.
  if (header.crit !== undefined) throw new VerifierError('ERR_TOKEN_CRIT', 'access token has critical header parameters');
  // RFC 9068 §4: `typ` must be `at+jwt`, which is what tells an access token from an ID token.
  if (!typIs(header.typ, 'at+jwt')) throw new VerifierError('ERR_TOKEN_TYPE', 'token is not an access token (typ must be at+jwt)');
  if (kid !== undefined && typeof kid !== 'string') throw new VerifierError('ERR_TOKEN_MALFORMED', 'access token kid is not a string');
  return { alg: alg as SupportedAlgorithm, kid };
}

/**
 * The claim rules of RFC 9068 §4 and RFC 7519 §4.1; `now` is in seconds.
 *
 * `aud` must be one string equal to this API's audience. An array is refused even when it contains
 * the audience: Tether mints every token for exactly one resource (RFC 8707), so a multi-audience
 * token was not minted by Tether for this API, and accepting one would let a token meant for
 * several services be replayed at each of them.
 */
export function checkAccessTokenClaims(payload: JsonObject, rules: AccessTokenRules, now: number): AccessTokenClaims {
  const leeway = rules.clockToleranceSeconds;
  if (payload.iss !== rules.issuer) throw new VerifierError('ERR_TOKEN_ISSUER', 'access token issuer is not trusted');
  if (typeof payload.aud !== 'string' || payload.aud !== rules.audience) {
    throw new VerifierError('ERR_TOKEN_AUDIENCE', 'access token is not meant for this resource');
  }
  if (!isNumericDate(payload.exp)) throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token has no valid exp');
  // RFC 7519 §4.1.4: the current time must be before `exp` (plus the leeway).
  if (now - leeway >= payload.exp) throw new VerifierError('ERR_TOKEN_EXPIRED', 'access token has expired');
  if (payload.nbf !== undefined) {
    if (!isNumericDate(payload.nbf)) throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token nbf is not a number');
    // RFC 7519 §4.1.5
    if (payload.nbf > now + leeway) throw new VerifierError('ERR_TOKEN_NOT_YET_VALID', 'access token is not yet valid');
  }
  if (!isNumericDate(payload.iat)) throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token has no valid iat');
  // A token issued in the future comes from a skewed or forged clock (RFC 7519 §4.1.6).
  if (payload.iat > now + leeway) throw new VerifierError('ERR_TOKEN_IAT', 'access token was issued in the future');
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

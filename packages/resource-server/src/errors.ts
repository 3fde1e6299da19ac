/**
 * Typed errors of the resource-server verifier.
 *
 * Every rejection is a {@link VerifierError} with a stable `code` (in the style of jose's `ERR_JWT_*`
 * codes) that callers may branch on and log, plus the OAuth error and HTTP status that
 * {@link toHttpError} renders. Messages are short and safe to send to the client as
 * `error_description`: they name the rule that failed, never a key, a secret or the token itself.
 *
 * @module
 */

/**
 * OAuth error codes a protected resource answers with: RFC 6750 §3.1 (`invalid_request`,
 * `invalid_token`, `insufficient_scope`), RFC 9449 §7.1 and §9 (`invalid_dpop_proof`,
 * `use_dpop_nonce`), and RFC 6749 §4.1.2.1 `temporarily_unavailable` for the case where the issuer
 * (JWKS, metadata, introspection) or the replay store cannot be reached: answering `invalid_token`
 * there would tell a client to throw away a token that is perfectly good. `server_error` is only
 * for a bug in the verifier or in a plugged-in component (a thrown non-VerifierError).
 */
export type OAuthResourceErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'temporarily_unavailable'
  | 'server_error';

/** Which `WWW-Authenticate` challenge carries the error (RFC 6750 `Bearer` or RFC 9449 `DPoP`). */
export type AuthScheme = 'Bearer' | 'DPoP';

interface CodeSpec {
  readonly oauthError: OAuthResourceErrorCode;
  readonly status: 400 | 401 | 403 | 500 | 503;
}

const invalidRequest: CodeSpec = { oauthError: 'invalid_request', status: 400 };
const invalidToken: CodeSpec = { oauthError: 'invalid_token', status: 401 };
const invalidProof: CodeSpec = { oauthError: 'invalid_dpop_proof', status: 401 };
const unavailable: CodeSpec = { oauthError: 'temporarily_unavailable', status: 503 };

/**
 * The table of error codes: one source of truth for the OAuth error and HTTP status of each code.
 * Codes are part of the public API; add new ones, never rename.
 */
export const VERIFIER_ERROR_CODES = {
  // RFC 6750 §3.1: a request without any credentials of ours gets a challenge with no error code.
  ERR_NO_CREDENTIALS: { oauthError: 'invalid_request', status: 401 },
  ERR_UNSUPPORTED_SCHEME: { oauthError: 'invalid_request', status: 401 },
  ERR_AUTHORIZATION_HEADER: invalidRequest,
  ERR_REQUEST_INVALID: invalidRequest,
  ERR_CLIENT_CERT_HEADER: invalidRequest,

  ERR_TOKEN_TOO_LARGE: invalidToken,
  ERR_TOKEN_MALFORMED: invalidToken,
  ERR_TOKEN_ENCRYPTED: invalidToken,
  ERR_TOKEN_ALGORITHM: invalidToken,
  ERR_TOKEN_CRIT: invalidToken,
  ERR_TOKEN_TYPE: invalidToken,
  ERR_TOKEN_SIGNATURE: invalidToken,
  ERR_JWKS_NO_MATCHING_KEY: invalidToken,
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: invalidToken,
  ERR_TOKEN_ISSUER: invalidToken,
  ERR_TOKEN_AUDIENCE: invalidToken,
  ERR_TOKEN_EXPIRED: invalidToken,
  ERR_TOKEN_NOT_YET_VALID: invalidToken,
  ERR_TOKEN_IAT: invalidToken,
  ERR_TOKEN_CLAIM_INVALID: invalidToken,
  ERR_TOKEN_REVOKED: invalidToken,
  ERR_TOKEN_SCOPE: { oauthError: 'insufficient_scope', status: 403 },

  ERR_TOKEN_UNBOUND: invalidToken,
  ERR_BINDING_UNSUPPORTED: invalidToken,
  ERR_CERTIFICATE_MISSING: invalidToken,
  ERR_CERTIFICATE_MISMATCH: invalidToken,
  ERR_CERTIFICATE_INVALID: invalidToken,

  ERR_DPOP_BOUND_TOKEN_AS_BEARER: invalidToken,
  ERR_DPOP_NOT_BOUND: invalidToken,
  ERR_DPOP_KEY_MISMATCH: invalidToken,
  ERR_DPOP_PROOF_MISSING: invalidProof,
  ERR_DPOP_PROOF_MULTIPLE: invalidProof,
  ERR_DPOP_PROOF_MALFORMED: invalidProof,
  ERR_DPOP_PROOF_TYPE: invalidProof,
  ERR_DPOP_PROOF_ALGORITHM: invalidProof,
  ERR_DPOP_PROOF_JWK: invalidProof,
  ERR_DPOP_PROOF_SIGNATURE: invalidProof,
  ERR_DPOP_PROOF_HTM: invalidProof,
  ERR_DPOP_PROOF_HTU: invalidProof,
  ERR_DPOP_PROOF_IAT: invalidProof,
  ERR_DPOP_PROOF_ATH: invalidProof,
  ERR_DPOP_PROOF_REPLAYED: invalidProof,
  ERR_DPOP_NONCE: { oauthError: 'use_dpop_nonce', status: 401 },

  ERR_JWKS_UNAVAILABLE: unavailable,
  ERR_DISCOVERY_FAILED: unavailable,
  ERR_REVOCATION_UNAVAILABLE: unavailable,
  ERR_DPOP_STATE_UNAVAILABLE: unavailable,

  ERR_INTERNAL: { oauthError: 'server_error', status: 500 },
} as const satisfies Record<string, CodeSpec>;

/** A stable error code; see {@link VERIFIER_ERROR_CODES}. */
export type VerifierErrorCode = keyof typeof VERIFIER_ERROR_CODES;

/** Extra fields of a {@link VerifierError}. */
export interface VerifierErrorOptions {
  /** The underlying error, for logs; never rendered to the client. */
  cause?: unknown;
  /** For `ERR_TOKEN_SCOPE`: the scopes the request needed (rendered as `scope="..."`). */
  requiredScopes?: readonly string[];
  /** For `ERR_DPOP_NONCE`: the nonce the client must use next (rendered as the `DPoP-Nonce` header). */
  dpopNonce?: string;
  /** The challenge that carries the error; the verifier fills it in from the request and token. */
  scheme?: AuthScheme;
}

/**
 * The only kind of error `verifier.verify()` rejects with.
 *
 * `code` is stable and precise (what failed), `oauthError` and `status` are what the client is told
 * (RFC 6750 §3.1, RFC 9449 §7.1), `message` is a short description safe for `error_description`.
 */
export class VerifierError extends Error {
  /** Stable machine-readable code, e.g. `ERR_TOKEN_AUDIENCE`. */
  readonly code: VerifierErrorCode;
  /** The OAuth error code rendered in `WWW-Authenticate` and the JSON body. */
  readonly oauthError: OAuthResourceErrorCode;
  /** The HTTP status to answer with. */
  readonly status: 400 | 401 | 403 | 500 | 503;
  /** For insufficient scope: the scopes the request needed. */
  readonly requiredScopes: readonly string[] | undefined;
  /** For `use_dpop_nonce`: the nonce to send in the `DPoP-Nonce` response header. */
  dpopNonce: string | undefined;
  /**
   * Which challenge carries the error: `DPoP` when the request used the DPoP scheme or the token is
   * DPoP-bound, otherwise `Bearer`. Filled in by the verifier.
   */
  scheme: AuthScheme | undefined;

  constructor(code: VerifierErrorCode, message: string, options: VerifierErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const spec: CodeSpec = VERIFIER_ERROR_CODES[code];
    this.name = 'VerifierError';
    this.code = code;
    this.oauthError = spec.oauthError;
    this.status = spec.status;
    this.requiredScopes = options.requiredScopes;
    this.dpopNonce = options.dpopNonce;
    this.scheme = options.scheme;
  }
}

/** Narrows `err` to a {@link VerifierError}. */
export function isVerifierError(err: unknown): err is VerifierError {
  return err instanceof VerifierError;
}

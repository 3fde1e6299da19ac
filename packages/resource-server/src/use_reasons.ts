/**
 * The reasons a use report gives for a refused presentation: a small, stable vocabulary that an
 * operator reads in `tether report`, coarser than the verifier's error codes (which stay in the
 * report as `code` for precision). The server validates reports against this same list.
 *
 * @module
 */
import type { VerifierErrorCode } from './errors.js';

/**
 * Why a presentation was refused. `wrong_audience` is the lateral-movement signal (a token for API A
 * presented at API B); `revoked`, `replayed_proof` and `binding_mismatch` point at a stolen token.
 */
export const USE_REFUSAL_REASONS = [
  'wrong_audience',
  'expired',
  'not_yet_valid',
  'revoked',
  'binding_mismatch',
  'replayed_proof',
  'bad_signature',
  'unknown_issuer',
  'insufficient_scope',
  'malformed',
  'bad_proof',
  'no_credentials',
  'unavailable',
] as const;

/** One of {@link USE_REFUSAL_REASONS}. */
export type UseRefusalReason = (typeof USE_REFUSAL_REASONS)[number];

const REASON_OF_CODE: Readonly<Record<VerifierErrorCode, UseRefusalReason>> = {
  ERR_NO_CREDENTIALS: 'no_credentials',
  ERR_UNSUPPORTED_SCHEME: 'no_credentials',
  ERR_AUTHORIZATION_HEADER: 'malformed',
  ERR_REQUEST_INVALID: 'malformed',
  ERR_CLIENT_CERT_HEADER: 'malformed',

  ERR_TOKEN_TOO_LARGE: 'malformed',
  ERR_TOKEN_MALFORMED: 'malformed',
  ERR_TOKEN_ENCRYPTED: 'malformed',
  ERR_TOKEN_ALGORITHM: 'bad_signature',
  ERR_TOKEN_CRIT: 'malformed',
  ERR_TOKEN_TYPE: 'malformed',
  ERR_TOKEN_SIGNATURE: 'bad_signature',
  // A key the issuer never published: a forgery, or a token from another issuer using our `iss`.
  ERR_JWKS_NO_MATCHING_KEY: 'bad_signature',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'bad_signature',
  ERR_TOKEN_ISSUER: 'unknown_issuer',
  ERR_TOKEN_AUDIENCE: 'wrong_audience',
  ERR_TOKEN_EXPIRED: 'expired',
  ERR_TOKEN_NOT_YET_VALID: 'not_yet_valid',
  ERR_TOKEN_IAT: 'not_yet_valid',
  ERR_TOKEN_CLAIM_INVALID: 'malformed',
  ERR_TOKEN_REVOKED: 'revoked',
  ERR_TOKEN_SCOPE: 'insufficient_scope',

  ERR_TOKEN_UNBOUND: 'binding_mismatch',
  ERR_BINDING_UNSUPPORTED: 'binding_mismatch',
  ERR_CERTIFICATE_MISSING: 'binding_mismatch',
  ERR_CERTIFICATE_MISMATCH: 'binding_mismatch',
  ERR_CERTIFICATE_INVALID: 'binding_mismatch',

  ERR_DPOP_BOUND_TOKEN_AS_BEARER: 'binding_mismatch',
  ERR_DPOP_NOT_BOUND: 'binding_mismatch',
  ERR_DPOP_KEY_MISMATCH: 'binding_mismatch',
  ERR_DPOP_PROOF_MISSING: 'binding_mismatch',
  ERR_DPOP_PROOF_MULTIPLE: 'bad_proof',
  ERR_DPOP_PROOF_MALFORMED: 'bad_proof',
  ERR_DPOP_PROOF_TYPE: 'bad_proof',
  ERR_DPOP_PROOF_ALGORITHM: 'bad_proof',
  ERR_DPOP_PROOF_JWK: 'bad_proof',
  ERR_DPOP_PROOF_SIGNATURE: 'bad_proof',
  ERR_DPOP_PROOF_HTM: 'bad_proof',
  ERR_DPOP_PROOF_HTU: 'bad_proof',
  ERR_DPOP_PROOF_IAT: 'bad_proof',
  ERR_DPOP_PROOF_ATH: 'bad_proof',
  ERR_DPOP_PROOF_REPLAYED: 'replayed_proof',
  ERR_DPOP_NONCE: 'bad_proof',

  ERR_JWKS_UNAVAILABLE: 'unavailable',
  ERR_DISCOVERY_FAILED: 'unavailable',
  ERR_REVOCATION_UNAVAILABLE: 'unavailable',
  ERR_DPOP_STATE_UNAVAILABLE: 'unavailable',

  ERR_INTERNAL: 'unavailable',
};

/** The use-report reason of a verifier error code. */
export function useRefusalReason(code: VerifierErrorCode): UseRefusalReason {
  return REASON_OF_CODE[code];
}

/** Whether `value` is one of {@link USE_REFUSAL_REASONS}. */
export function isUseRefusalReason(value: unknown): value is UseRefusalReason {
  return typeof value === 'string' && (USE_REFUSAL_REASONS as readonly string[]).includes(value);
}

/**
 * Rendering of verifier errors as HTTP responses: RFC 6750 §3 `Bearer` and RFC 9449 §7.1 `DPoP`
 * challenges, with `resource_metadata` (RFC 9728 §5.1). Every middleware answers through
 * {@link toHttpError}, so all of them say the same thing for the same failure.
 *
 * @module
 */
import { VerifierError, type AuthScheme } from './errors.js';

/** What the challenges say besides the error. */
export interface ChallengeOptions {
  /** The `realm` parameter (RFC 9110 §11.5). */
  readonly realm?: string;
  /** URL of this resource's RFC 9728 metadata, sent as `resource_metadata`. */
  readonly resourceMetadataUrl?: string;
  /** DPoP algorithms accepted (the `algs` parameter); `undefined` when DPoP is not accepted. */
  readonly dpopAlgorithms?: readonly string[];
  /** Whether the Bearer scheme is accepted at all (default true: mTLS-bound tokens use it). */
  readonly bearer?: boolean;
}

/** A response to send as is. */
export interface HttpErrorResponse {
  readonly status: number;
  /** Lower-case header names; `www-authenticate` may hold one value per challenge. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  readonly body: { readonly error: string; readonly error_description?: string };
}

/** Codes that mean "no credentials of ours": RFC 6750 §3.1 says such a challenge carries no error. */
const NO_ERROR_CHALLENGE = new Set(['ERR_NO_CREDENTIALS', 'ERR_UNSUPPORTED_SCHEME']);

/**
 * Turns any error into the response to send. A {@link VerifierError} gets its status, challenges
 * and body; anything else is answered as a 500 without detail.
 */
export function toHttpError(err: unknown, options: ChallengeOptions = {}): HttpErrorResponse {
  if (!(err instanceof VerifierError)) {
    return { status: 500, headers: jsonHeaders(), body: { error: 'server_error' } };
  }
  const body = { error: err.oauthError, error_description: err.message };
  if (err.status === 503 || err.status === 500) {
    const headers = jsonHeaders();
    if (err.status === 503) headers['retry-after'] = '5';
    return { status: err.status, headers, body };
  }
  const headers: Record<string, string | readonly string[]> = jsonHeaders();
  headers['www-authenticate'] = challenges(err, options);
  if (err.dpopNonce !== undefined) headers['dpop-nonce'] = err.dpopNonce;
  return { status: err.status, headers, body };
}

function jsonHeaders(): Record<string, string> {
  return { 'content-type': 'application/json', 'cache-control': 'no-store' };
}

/**
 * The challenges, the one carrying the error first. RFC 9449 §7.1 allows both schemes to be
 * offered; the scheme the client used (or must use, for a DPoP-bound token) carries the error.
 */
function challenges(err: VerifierError, options: ChallengeOptions): string[] {
  const offerBearer = options.bearer !== false;
  const offerDpop = options.dpopAlgorithms !== undefined && options.dpopAlgorithms.length > 0;
  if (NO_ERROR_CHALLENGE.has(err.code)) {
    const offered: string[] = [];
    if (offerBearer || !offerDpop) offered.push(challenge('Bearer', undefined, options));
    if (offerDpop) offered.push(challenge('DPoP', undefined, options));
    return offered;
  }
  const errorScheme: AuthScheme = err.scheme === 'DPoP' || !offerBearer ? 'DPoP' : 'Bearer';
  const result = [challenge(errorScheme, err, options)];
  if (errorScheme === 'DPoP' && offerBearer) result.push(challenge('Bearer', undefined, options));
  if (errorScheme === 'Bearer' && offerDpop) result.push(challenge('DPoP', undefined, options));
  return result;
}

function challenge(scheme: AuthScheme, err: VerifierError | undefined, options: ChallengeOptions): string {
  const params: string[] = [];
  if (options.realm !== undefined) params.push(`realm="${quote(options.realm)}"`);
  if (err !== undefined) {
    params.push(`error="${err.oauthError}"`, `error_description="${restrictedChars(err.message)}"`);
    // RFC 6750 §3: `scope` tells the client which scopes a new token needs.
    if (err.requiredScopes !== undefined) params.push(`scope="${restrictedChars(err.requiredScopes.join(' '))}"`);
  }
  // RFC 9449 §7.1: `algs` lists the proof algorithms the resource accepts.
  if (scheme === 'DPoP' && options.dpopAlgorithms !== undefined) params.push(`algs="${options.dpopAlgorithms.join(' ')}"`);
  if (options.resourceMetadataUrl !== undefined) params.push(`resource_metadata="${quote(options.resourceMetadataUrl)}"`);
  return params.length === 0 ? scheme : `${scheme} ${params.join(', ')}`;
}

/**
 * RFC 9110 §5.6.4 quoted-string: escape `"` and `\`; drop control and non-ASCII characters, which
 * a header value cannot carry portably.
 */
function quote(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '').replace(/["\\]/g, '\\$&');
}

/** RFC 6750 §3: `error_description` and `scope` use only %x20-21 / %x23-5B / %x5D-7E. */
function restrictedChars(value: string): string {
  return value.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, ' ');
}

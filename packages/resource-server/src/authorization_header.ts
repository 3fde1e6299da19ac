/**
 * The `Authorization` request header (RFC 9110 §11.6.2) with the `Bearer` (RFC 6750 §2.1) or `DPoP`
 * (RFC 9449 §7.1) scheme. Only the header method is supported: tokens in query strings or form
 * bodies (RFC 6750 §2.2–§2.3) leak into logs and are not accepted.
 *
 * @module
 */
import { VerifierError, type AuthScheme } from './errors.js';

/** The scheme and token of the request. */
export interface Credentials {
  readonly scheme: AuthScheme;
  readonly token: string;
}

/** RFC 9110 §11.2 token68. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Room for the scheme name and separating spaces on top of the token size limit. */
const SCHEME_ALLOWANCE = 32;

/**
 * Parses the `Authorization` header; rejects `ERR_NO_CREDENTIALS` when there is none,
 * `ERR_UNSUPPORTED_SCHEME` for schemes other than Bearer and DPoP, `ERR_TOKEN_TOO_LARGE` before
 * looking at an oversize value, and `ERR_AUTHORIZATION_HEADER` for anything malformed.
 */
export function parseAuthorization(header: string | readonly string[] | undefined, maxTokenBytes: number): Credentials {
  let value = header;
  if (Array.isArray(value)) {
    // RFC 6750 §3.1: more than one method of presenting credentials is an invalid request.
    if (value.length > 1) throw new VerifierError('ERR_AUTHORIZATION_HEADER', 'more than one Authorization header');
    value = value[0];
  }
  if (typeof value !== 'string' || value.length === 0) throw new VerifierError('ERR_NO_CREDENTIALS', 'no access token');
  if (value.length > maxTokenBytes + SCHEME_ALLOWANCE) throw new VerifierError('ERR_TOKEN_TOO_LARGE', 'access token is too large');
  const space = value.indexOf(' ');
  const schemeName = (space === -1 ? value : value.slice(0, space)).toLowerCase();
  // RFC 9110 §11.1: auth-scheme names are case-insensitive.
  let scheme: AuthScheme;
  if (schemeName === 'bearer') scheme = 'Bearer';
  else if (schemeName === 'dpop') scheme = 'DPoP';
  else throw new VerifierError('ERR_UNSUPPORTED_SCHEME', 'authorization scheme is not supported');
  const token = space === -1 ? '' : value.slice(space + 1).replace(/^ +/, '');
  if (!TOKEN68.test(token)) throw new VerifierError('ERR_AUTHORIZATION_HEADER', 'Authorization header is malformed');
  return { scheme, token };
}

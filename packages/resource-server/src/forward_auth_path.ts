/**
 * The original request target a gateway forwards (`X-Original-URI`, `X-Forwarded-Uri`, Envoy's
 * path), split and checked before any route is matched.
 *
 * Decision: a path that would need normalization beyond RFC 3986 §6.2.2.2 (decoding percent-encoded
 * unreserved characters, which every implementation agrees on) is refused, not normalized. The
 * gateway, this server and the upstream each normalize differently (nginx merges slashes and
 * resolves dot segments for its own `location` matching but passes the raw URI on; Node passes
 * the raw URI to the application; frameworks differ), so "normalize, then match" authorizes the
 * path one of them imagines and serves the path another one resolves. A path that needs no
 * normalization means the same thing to all three. Refused (400 `invalid_request`):
 *
 * - dot segments, literal or encoded (`/a/../b`, `/a/./b`, `/a/%2e%2e/b`): RFC 3986 §5.2.4 would
 *   turn `/public/../admin` into `/admin`;
 * - encoded `/` and `\` (`%2F`, `%5C`) and literal `\`: one hop splits segments on them, another not;
 * - empty segments (`//`): nginx merges them, Node does not;
 * - `%00`, control characters, non-ASCII, malformed percent-encoding, fragments, anything that is
 *   not origin-form (RFC 9112 §3.2.1), and targets longer than {@link MAX_ORIGINAL_URI_LENGTH}.
 *
 * @module
 */
import { VerifierError } from './errors.js';

/** Longest original request target accepted (bytes of the header value). */
export const MAX_ORIGINAL_URI_LENGTH = 8192;

/** An original request target that passed the checks. */
export interface OriginalTarget {
  /** The path exactly as the client sent it (the DPoP `htu` is built from it). */
  readonly rawPath: string;
  /** `?query`, or `''`. */
  readonly query: string;
  /** The path's segments with percent-encoded unreserved characters decoded, for route matching. */
  readonly segments: readonly string[];
}

// RFC 3986 §3.3 pchar = unreserved / pct-encoded / sub-delims / ":" / "@", plus "/" between segments.
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
// The query takes no part in route matching nor in DPoP `htu` (RFC 9449 §4.3), so it is held only to
// visible ASCII: clients send `a[]=1` and `{…}` unencoded, which RFC 3986 §3.4 would not allow.
const QUERY_CHARS = /^[\x21-\x22\x24-\x7e]*$/;
const PERCENT_TRIPLET = /%(?![0-9A-Fa-f]{2})/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * Splits and checks an origin-form request target.
 *
 * @throws VerifierError `ERR_REQUEST_INVALID` naming what was wrong (never echoing the target)
 */
export function parseOriginalTarget(target: string): OriginalTarget {
  if (target.length > MAX_ORIGINAL_URI_LENGTH) throw refused('the original request URI is too long');
  // RFC 9112 §3.2.1: origin-form is an absolute path and an optional query; no fragment is ever sent.
  if (!target.startsWith('/')) throw refused('the original request URI is not an absolute path');
  const queryAt = target.indexOf('?');
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  const query = queryAt === -1 ? '' : target.slice(queryAt);
  if (!PATH_CHARS.test(rawPath) || !QUERY_CHARS.test(query.slice(1))) throw refused('the original request URI has characters a URI cannot hold');
  if (PERCENT_TRIPLET.test(rawPath)) throw refused('the original request URI has malformed percent-encoding');
  const segments = rawPath.slice(1).split('/').map(decodeUnreserved);
  for (const [index, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') throw refused('the original request path has dot segments');
    // A trailing slash is an empty last segment (`/orders/`), a distinct path; `//` inside is ambiguous.
    if (segment === '' && index < segments.length - 1) throw refused('the original request path has an empty segment (//)');
    if (/%(?:2[Ff]|5[Cc]|00)/.test(segment)) throw refused('the original request path has an encoded slash, backslash or NUL');
  }
  return { rawPath, query, segments };
}

/** RFC 3986 §6.2.2.2: percent-encoded unreserved characters are the characters themselves. */
function decodeUnreserved(segment: string): string {
  if (!segment.includes('%')) return segment;
  return segment.replace(/%[0-9A-Fa-f]{2}/g, (escape) => {
    const char = String.fromCharCode(parseInt(escape.slice(1), 16));
    return UNRESERVED.test(char) ? char : escape.toUpperCase();
  });
}

function refused(message: string): VerifierError {
  return new VerifierError('ERR_REQUEST_INVALID', message);
}

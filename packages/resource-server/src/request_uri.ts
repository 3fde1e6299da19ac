/**
 * Normalization of the HTTP URI a DPoP proof is bound to (RFC 9449 §4.3 check 9): `htu` and the
 * request URL are compared without query and fragment, after the syntax-based and scheme-based
 * normalization of RFC 3986 §6.2.2 and §6.2.3, so that `HTTPS://API.example:443/a/%7e` and
 * `https://api.example/a/~` are the same resource.
 *
 * @module
 */

const PERCENT_ENCODED = /%[0-9A-Fa-f]{2}/g;
/** RFC 3986 §2.3 unreserved characters, which must be decoded when percent-encoded. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * Returns the normalized `scheme://authority/path` of an absolute `http`/`https` URI, or
 * `undefined` when it is not one.
 */
export function normalizeHttpUri(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  // The URL parser already lower-cases scheme and host, drops the default port, removes dot
  // segments and turns an empty path into "/" (RFC 3986 §6.2.2.1, §6.2.2.3, §6.2.3).
  return `${url.protocol}//${url.host}${normalizePercentEncoding(url.pathname)}`;
}

/** RFC 3986 §6.2.2.1–§6.2.2.2: upper-case hex digits, decode unreserved characters. */
function normalizePercentEncoding(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(PERCENT_ENCODED, (escape) => {
    const char = String.fromCharCode(parseInt(escape.slice(1), 16));
    return UNRESERVED.test(char) ? char : escape.toUpperCase();
  });
}

/**
 * A configured public base URL (what clients address, behind a proxy or gateway), without a
 * trailing slash; `strict` also refuses a query, fragment or userinfo (the forward-auth server joins
 * the original path to it). Throws `TypeError` naming `publicBaseUrl`.
 */
export function publicBaseUrlOf(base: string, options: { strict?: boolean } = {}): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new TypeError('publicBaseUrl must be an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('publicBaseUrl must be an http(s) URL');
  if (options.strict && (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '')) {
    throw new TypeError('publicBaseUrl must be an origin with an optional path, nothing else');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * What a caller asks for: one resource (RFC 8707) and a set of scopes (RFC 6749 §3.3), checked and
 * put in the one form the cache keys on.
 *
 * @module
 */

/** One API and the scopes a call to it needs. */
export interface AccessRequest {
  /**
   * The RFC 8707 resource indicator of the API: an absolute URI without a fragment, compared as an
   * exact string (`https://api.example` and `https://api.example/` are two different resources).
   */
  readonly resource: string;
  /**
   * The scopes, as a list or space-separated. Order and duplicates do not matter; a token is never
   * used for a request whose scopes it exceeds. An empty set asks for a token with no scope.
   */
  readonly scopes: readonly string[] | string;
}

/** An {@link AccessRequest} checked and normalized: scopes unique and sorted. */
export interface NormalizedAccessRequest {
  readonly resource: string;
  readonly scopes: readonly string[];
}

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** Checks `request` and puts its scopes in canonical order; throws TypeError on a malformed one. */
export function normalizeAccessRequest(request: AccessRequest): NormalizedAccessRequest {
  return { resource: checkResource(request.resource), scopes: normalizeScopes(request.scopes) };
}

// RFC 3986 §2: a URI is printable ASCII without spaces.
const URI_CHARS = /^[\x21-\x7E]+$/;

/** RFC 8707 §2: an absolute URI, no fragment. Kept exactly as given: no normalization. */
export function checkResource(resource: unknown): string {
  if (typeof resource !== 'string' || !URI_CHARS.test(resource) || URL.parse(resource) === null || resource.includes('#')) {
    throw new TypeError('resource must be an absolute URI without a fragment (RFC 8707 §2)');
  }
  return resource;
}

/** Unique, sorted scope tokens from a list or a space-separated string. */
export function normalizeScopes(scopes: readonly string[] | string): string[] {
  const list = typeof scopes === 'string' ? scopes.split(' ').filter((scope) => scope !== '') : scopes;
  if (!Array.isArray(list)) throw new TypeError('scopes must be a list of scope tokens or a space-separated string');
  for (const scope of list) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope)) throw new TypeError('each scope must be a scope token (RFC 6749 §3.3)');
  }
  return [...new Set(list as string[])].sort();
}

/** Scopes of a `scope` response member or claim (space-separated); `undefined` when it is not a string of scope tokens. */
export function parseScopeString(value: string): string[] | undefined {
  const list = value.split(' ').filter((scope) => scope !== '');
  return list.every((scope) => SCOPE_TOKEN.test(scope)) ? [...new Set(list)].sort() : undefined;
}

/** True when every scope of `granted` is in `requested`. */
export function isScopeSubset(granted: readonly string[], requested: readonly string[]): boolean {
  return granted.every((scope) => requested.includes(scope));
}

/**
 * A string naming `request` exactly as given, for memoizing its normalization on the hot path of a
 * cache hit; `undefined` when it cannot be named unambiguously (a NUL where none belongs — such a
 * request is invalid anyway and takes the checked path). Resource and scopes are separated by NUL,
 * which neither a valid resource nor a valid scope contains, and a string of scopes is told apart
 * from a list.
 */
export function requestMemoKey(request: AccessRequest): string | undefined {
  const { resource, scopes } = request;
  if (typeof resource !== 'string' || resource.includes('\0')) return undefined;
  if (typeof scopes === 'string') return `${resource}\0s${scopes}`;
  if (!Array.isArray(scopes)) return undefined;
  let key = `${resource}\0a`;
  for (const scope of scopes as readonly unknown[]) {
    if (typeof scope !== 'string' || scope.includes('\0')) return undefined;
    key += `\0${scope}`;
  }
  return key;
}

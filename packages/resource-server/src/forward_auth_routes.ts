/**
 * The route table of a forward-auth server: which scopes each operation of the API behind the
 * gateway needs. Default deny: a request that matches no route is refused whatever its token.
 *
 * A path pattern is matched segment by segment against the checked path (forward_auth_path.ts):
 * a literal segment matches itself (after decoding percent-encoded unreserved characters, so
 * `/%7Eadmin` is `/~admin`), `*` matches exactly one non-empty segment, and `**` as the last
 * segment matches one or more remaining segments. Routes are tried in order; the first match wins.
 *
 * @module
 */

/** One route: the methods and path it covers, and the scopes a token needs for it. */
export interface ForwardAuthRoute {
  /** HTTP methods (exact, case-sensitive as RFC 9110 §9.1 says), or `'*'` for any. */
  readonly method: string | readonly string[];
  /** Path pattern: `/orders`, `/orders/*`, `/files/**`. */
  readonly path: string;
  /** Scopes a token needs, all of them (may be empty: any valid, bound token for this API). */
  readonly scopes: readonly string[];
}

/** A compiled route table. */
export type RouteMatcher = (method: string, segments: readonly string[]) => ForwardAuthRoute | undefined;

// RFC 9110 §5.6.2 token.
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

interface CompiledRoute {
  readonly route: ForwardAuthRoute;
  readonly methods: ReadonlySet<string> | 'any';
  readonly segments: readonly string[];
  readonly rest: boolean;
}

/**
 * Compiles the table. Throws `TypeError` naming the route (`routes[2].path`) for a pattern or
 * method that cannot be matched as written.
 */
export function compileRoutes(routes: readonly ForwardAuthRoute[]): RouteMatcher {
  if (!Array.isArray(routes) || routes.length === 0) throw new TypeError('routes must be a non-empty array (a request matching no route is refused)');
  const compiled = routes.map(compileRoute);
  return (method, segments) => compiled.find((candidate) => matches(candidate, method, segments))?.route;
}

function compileRoute(route: ForwardAuthRoute, index: number): CompiledRoute {
  const where = `routes[${index}]`;
  const methods = route.method === '*' ? 'any' : new Set(typeof route.method === 'string' ? [route.method] : route.method);
  if (methods !== 'any') {
    if (!Array.isArray(route.method) && typeof route.method !== 'string') throw new TypeError(`${where}.method must be a method, a list of methods or "*"`);
    if (methods.size === 0) throw new TypeError(`${where}.method must name at least one method`);
    for (const method of methods) if (typeof method !== 'string' || !METHOD.test(method)) throw new TypeError(`${where}.method ${JSON.stringify(method)} is not an HTTP method`);
  }
  if (typeof route.path !== 'string' || !route.path.startsWith('/')) throw new TypeError(`${where}.path must start with "/"`);
  const segments = route.path.slice(1).split('/');
  segments.forEach((segment, position) => {
    if (segment === '**' && position !== segments.length - 1) throw new TypeError(`${where}.path: "**" may only be the last segment`);
    if (segment === '.' || segment === '..') throw new TypeError(`${where}.path has a dot segment`);
    if (segment === '' && position < segments.length - 1) throw new TypeError(`${where}.path has an empty segment (//)`);
    // Literal pchars only (RFC 3986 §3.3, no percent-encoding): a request's segments are compared decoded.
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/.test(segment)) throw new TypeError(`${where}.path: segments hold letters, digits and -._~!$&'()*+,;=:@ only (no "%", "\\", "?", "#")`);
    if (segment !== '*' && segment !== '**' && segment.includes('*')) throw new TypeError(`${where}.path: "*" and "**" must be whole segments`);
  });
  if (!Array.isArray(route.scopes) || route.scopes.some((scope) => typeof scope !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope))) {
    // RFC 6749 §3.3 scope-token.
    throw new TypeError(`${where}.scopes must be a list of scope tokens`);
  }
  const rest = segments.at(-1) === '**';
  return { route, methods, segments: rest ? segments.slice(0, -1) : segments, rest };
}

function matches(candidate: CompiledRoute, method: string, segments: readonly string[]): boolean {
  if (candidate.methods !== 'any' && !candidate.methods.has(method)) return false;
  const fixed = candidate.segments.length;
  if (candidate.rest ? segments.length <= fixed : segments.length !== fixed) return false;
  for (let index = 0; index < fixed; index += 1) {
    const pattern = candidate.segments[index];
    const segment = segments[index]!;
    if (pattern === '*' ? segment === '' : pattern !== segment) return false;
  }
  // `**` stands for at least one segment, and none of them empty (`/files/` is not a file).
  return !candidate.rest || segments.slice(fixed).every((segment) => segment !== '');
}

import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';

/**
 * The endpoints Tether serves, and only those, reach oidc-provider's router: discovery (RFC 8414,
 * and `openid-configuration`, which generic clients and verifiers look for), jwks, token,
 * introspection and revocation. oidc-provider mounts its authorization endpoint (`/auth`,
 * `/auth/:uid`) and logout confirmation (`/session/end/confirm`) whatever its features say; those,
 * and any other path, are a plain 404 here, before anything is parsed or stored.
 *
 * Also: a POST body whose declared length exceeds `http.maxBodySize` is refused with 413 before it
 * is read, and discovery advertises no endpoint that is not served (RFC 8414 §2: no
 * `authorization_endpoint` when no grant uses it).
 */

const SERVED_ROUTES = ['token', 'introspection', 'revocation', 'jwks'] as const;
const DISCOVERY_PATHS = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'];

export function servedRoutesOnly(provider: Provider, limits: { maxBodySize: number }) {
  // Paths as oidc-provider's router matches them, and as its discovery document names them.
  const served = new Set([...DISCOVERY_PATHS, ...SERVED_ROUTES.map((name) => provider.pathFor(name, { mountPath: '' }))]);
  const advertised = new Set(SERVED_ROUTES.map((name) => provider.pathFor(name)));

  return async function servedRoutesOnlyMiddleware(ctx: Context, next: Next): Promise<void> {
    if (!served.has(ctx.path)) {
      ctx.status = 404;
      return;
    }
    const declared = ctx.request.length;
    if (declared !== undefined && declared > limits.maxBodySize) {
      refuseLargeBody(ctx, limits.maxBodySize);
      return;
    }
    await next();
    // A body left unread (refused mid-way, e.g. at oidc-provider's own cap) is not drained: close.
    if (!ctx.req.complete) ctx.set('Connection', 'close');
    if (DISCOVERY_PATHS.includes(ctx.path)) advertiseServedOnly(ctx, advertised);
  };
}

/**
 * RFC 9110 §15.5.14. The connection is closed after the answer, so the rest of the body is not read
 * (a body without a declared length meets oidc-provider's own 56 KiB cap: 400 invalid_request).
 */
function refuseLargeBody(ctx: Context, maxBodySize: number): void {
  ctx.status = 413;
  ctx.set('Connection', 'close');
  ctx.body = { error: 'invalid_request', error_description: `the request body is larger than ${maxBodySize} bytes` };
}

/** Removes every `…_endpoint` (and session iframe) whose path is not served. */
function advertiseServedOnly(ctx: Context, advertised: ReadonlySet<string>): void {
  if (ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return;
  const metadata = ctx.body as Record<string, unknown>;
  for (const [name, value] of Object.entries(metadata)) {
    if (!/_endpoint$|_iframe$/.test(name) || typeof value !== 'string') continue;
    const url = URL.parse(value);
    if (!url || !advertised.has(url.pathname)) delete metadata[name];
  }
}

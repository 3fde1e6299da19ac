/**
 * An orders API protected by Tether: every request needs an access token for this API (`aud`), bound
 * to the caller's TLS client certificate (RFC 8705) or DPoP key (RFC 9449), not expired, not revoked,
 * with the scope the operation needs. The checks are `koaVerifier` from `tether-oauth/resource-server`; the
 * API's own code only routes and serves orders. With `useReporter` the verifier tells Tether what it saw
 * (use_reporting.ts).
 *
 *   GET  /orders   orders:read   the orders
 *   POST /orders   orders:write  adds one ({ "item": "…" })
 */
import Koa from 'koa';
import { createVerifier, koaVerifier, type AccessTokenClaims, type FetchLike, type KoaLikeMiddleware, type UseRecorder } from '../../src/resource_server/index.js';

/** Builds the middleware that checks the token for an operation needing `requiredScopes`. */
export type Authenticate = (requiredScopes: readonly string[]) => KoaLikeMiddleware;

/** Options of {@link createOrdersApi}. */
export interface OrdersApiOptions {
  /** Tether's issuer URL. */
  readonly issuer: string;
  /** This API's resource URI, as registered at Tether: the `aud` its tokens carry. */
  readonly resource: string;
  /** How the verifier reaches Tether (metadata, JWKS, introspection); e.g. undici's fetch trusting Tether's CA. */
  readonly fetch?: FetchLike;
  /**
   * Revocation check by introspection (RFC 7662) as this API's own client, registered at Tether as an
   * introspector of `resource`; `fetchOptions.dispatcher` presents its certificate. Without it a
   * revoked token is accepted until it expires.
   */
  readonly introspection?: { readonly clientId: string; readonly fetchOptions: { readonly dispatcher: unknown } };
  /** Where the verifier reports every accepted and refused presentation (use_reporting.ts); none by default. */
  readonly useReporter?: UseRecorder;
  /** The URL clients use, when the API sits behind a proxy (DPoP `htu` is compared with it). */
  readonly publicBaseUrl?: string;
  /** Replaces the token check (default: {@link verifierAuthentication}). */
  readonly authenticate?: Authenticate;
}

interface Order {
  readonly id: number;
  readonly item: string;
  readonly placedBy: string;
}

/** The check every route uses: one verifier, `koaVerifier` per set of required scopes. */
export function verifierAuthentication(options: OrdersApiOptions): Authenticate {
  const verifier = createVerifier({
    issuer: options.issuer,
    audience: options.resource,
    fetch: options.fetch,
    ...(options.introspection
      ? { revocation: { introspect: { clientAuth: { method: 'tls_client_auth' as const, clientId: options.introspection.clientId }, fetchOptions: options.introspection.fetchOptions } } }
      : {}),
    ...(options.useReporter ? { useReporter: options.useReporter } : {}),
  });
  return (requiredScopes) => koaVerifier({ verifier, requiredScopes, publicBaseUrl: options.publicBaseUrl });
}

/** The orders API as a koa application (serve it over HTTPS that asks for client certificates: {@link listenOrdersApi}). */
export function createOrdersApi(options: OrdersApiOptions): Koa {
  const authenticate = (options.authenticate ?? verifierAuthentication(options));
  const canRead = authenticate(['orders:read']);
  const canWrite = authenticate(['orders:write']);
  const orders: Order[] = [{ id: 1, item: 'tea', placedBy: 'seed' }];

  const app = new Koa();
  app.use(async (ctx, next) => {
    if (ctx.path !== '/orders') return next();
    if (ctx.method === 'GET') {
      await canRead(ctx, async () => {
        ctx.body = { orders };
      });
      return;
    }
    if (ctx.method === 'POST') {
      await canWrite(ctx, async () => {
        const order = { id: orders.length + 1, item: await readItem(ctx.req), placedBy: (ctx.state.token as AccessTokenClaims).client_id };
        orders.push(order);
        ctx.status = 201;
        ctx.body = order;
      });
      return;
    }
    ctx.status = 405;
    ctx.set('allow', 'GET, POST');
  });
  return app;
}

/** The `item` of a small JSON body; anything else orders "something". */
async function readItem(req: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 4096) break;
  }
  try {
    const item = (JSON.parse(text) as { item?: unknown }).item;
    return typeof item === 'string' && item.length > 0 ? item.slice(0, 100) : 'something';
  } catch {
    return 'something';
  }
}

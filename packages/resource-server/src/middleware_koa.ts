/**
 * Koa integration, typed structurally (any koa 2/3 context fits) so that the published types do
 * not require `@types/koa`.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { createHttpAdapter, type MiddlewareOptions } from './http_adapter.js';
import { pathOf } from './middleware_node.js';

/** The parts of a koa context the middleware uses. */
export interface KoaLikeContext {
  readonly req: IncomingMessage;
  readonly method: string;
  /** The URL before any mounting rewrote `ctx.url`. */
  readonly originalUrl: string;
  state: Record<string, unknown>;
  status: number;
  body: unknown;
  set(field: { [name: string]: string | string[] }): void;
}

/** A koa middleware. */
export type KoaLikeMiddleware = (ctx: KoaLikeContext, next: () => Promise<unknown>) => Promise<void>;

/**
 * Koa middleware: serves the RFC 9728 metadata document, sets `ctx.state.token` to the validated
 * claims and calls `next()`, or answers the RFC 6750 / RFC 9449 error (without throwing, so client
 * errors do not reach the app's error handler as failures).
 */
export function koaVerifier(options: MiddlewareOptions): KoaLikeMiddleware {
  const adapter = createHttpAdapter(options);
  return async (ctx, next) => {
    if (adapter.isMetadataRequest(ctx.method, pathOf(ctx.originalUrl))) {
      ctx.status = 200;
      ctx.set({ 'cache-control': 'public, max-age=300', 'content-type': 'application/json' });
      ctx.body = adapter.metadataJson;
      return;
    }
    let token;
    try {
      token = await adapter.verify(ctx.req, ctx.originalUrl);
    } catch (err) {
      const response = adapter.render(err);
      ctx.status = response.status;
      ctx.set(response.headers as { [name: string]: string | string[] });
      ctx.body = response.body;
      return;
    }
    ctx.state.token = token;
    await next();
  };
}

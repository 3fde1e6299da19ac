import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Context, Next } from 'koa';
import type { Registry } from 'prom-client';
import type { HttpLimits } from '../config/schema.js';
import { listenHttp, type ListenerSpec, type RunningListener } from '../http/listeners.js';

/**
 * The Prometheus exposition of a registry at `path`: on Tether's own listener (a koa middleware,
 * config `metrics.listener: http | https`) or on a listener of its own (`metrics.listener: {host, port}`).
 * GET and HEAD only; anything else on that path is 405 with `Allow`.
 *
 * Beside health, before the served-origin check: a scraper addresses the instance by its pod or
 * host address, not by the issuer's name.
 */
export function metricsEndpoint(registry: Registry, path: string, listener: 'http' | 'https') {
  return async function metricsEndpointMiddleware(ctx: Context, next: Next): Promise<void> {
    // The app serves every listener; only the configured one answers (elsewhere the path is a 404).
    const encrypted = Boolean((ctx.req.socket as TLSSocket).encrypted);
    if (ctx.path !== path || encrypted !== (listener === 'https')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return undefined;
    }
    ctx.type = registry.contentType;
    ctx.body = await registry.metrics();
    return undefined;
  };
}

/** A plain HTTP listener that serves only `path` (everything else 404), for `metrics.listener: {host, port}`. */
export async function listenMetrics(registry: Registry, path: string, spec: ListenerSpec, limits?: HttpLimits): Promise<RunningListener> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const target = URL.parse(req.url ?? '/', 'http://metrics.invalid');
    if (target?.pathname !== path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  };
  return listenHttp(handler, spec, spec.host, limits);
}

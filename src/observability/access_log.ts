import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { LabelVocabulary } from './metric_labels.js';
import { summarizeRequest } from './request_summary.js';

/**
 * One JSON line per answered request (docs/operations.md#logs), at info (warn for a 5xx):
 *
 *   {"level":30,…,"requestId":"…","method":"POST","path":"/token","route":"token","status":401,
 *    "durationMs":3.1,"clientId":"unknown","grant":"client_credentials","error":"invalid_client",
 *    "peer":"10.0.0.7","forwardedFor":"203.0.113.9","userAgent":"curl/8.5.0","msg":"request"}
 *
 * Nothing in it is a secret or a string the client chose freely: the path without its query, the
 * client and grant as configured names or fixed words (metric_labels.ts), the OAuth error code,
 * never its description, no header but a bounded User-Agent. `forwardedFor` is the client address
 * a trusted proxy hop reported (http/request_origin.ts clientAddressOf); from any other peer the
 * header is ignored and only `peer` is logged.
 *
 * Installed outside every other middleware, so the status is the one the client was sent.
 */
export function accessLog(logger: Logger, options: {
  /** The bounded words for this request's client, resource, grant and error (its configuration's names). */
  labelsOf(ctx: Context): LabelVocabulary;
  /** The request's id and the client address settled for it (http/middleware.ts requestFactsOf). */
  factsOf(ctx: Context): { requestId: string; sourceAddress: string | undefined };
}) {
  return async function accessLogMiddleware(ctx: Context, next: Next): Promise<void> {
    const started = performance.now();
    try {
      await next();
    } finally {
      logRequest(ctx, logger, options, performance.now() - started);
    }
  };
}

const USER_AGENT_LENGTH = 200;

function logRequest(ctx: Context, logger: Logger, options: Parameters<typeof accessLog>[1], elapsedMs: number): void {
  const summary = summarizeRequest(ctx, options.labelsOf(ctx));
  const { requestId, sourceAddress } = options.factsOf(ctx);
  const peer = ctx.req.socket.remoteAddress;
  const userAgent = ctx.get('user-agent');
  const line = {
    requestId,
    method: ctx.method,
    path: boundedPath(ctx.path),
    route: summary.route,
    status: ctx.status,
    durationMs: Math.round(elapsedMs * 10) / 10,
    clientId: summary.client === 'none' ? undefined : summary.client,
    grant: summary.grant === 'none' ? undefined : summary.grant,
    error: summary.error === 'none' ? undefined : summary.error,
    peer,
    forwardedFor: sourceAddress !== undefined && sourceAddress !== peer ? sourceAddress : undefined,
    userAgent: userAgent === '' ? undefined : userAgent.slice(0, USER_AGENT_LENGTH),
  };
  if (ctx.status >= 500) logger.warn(line, 'request');
  else logger.info(line, 'request');
}

/**
 * The path as koa decoded it, bounded. A path is not where credentials go (RFC 6750 §2.3 puts
 * access tokens in the query, which is never logged), but a scanner's path can be long.
 */
function boundedPath(path: string, length = 200): string {
  return path.length > length ? `${path.slice(0, length)}…` : path;
}

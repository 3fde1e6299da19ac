import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { BindingError } from '../binding/binding_error.js';
import { callerCertificate, type CallerCertificateOptions } from '../binding/caller_certificate.js';
import type { PeerCertificate } from '../binding/socket_certificate.js';
import type { RequestFacts } from '../ledger/events.js';
import { checkReadiness } from '../storage/health.js';

/**
 * Koa middleware that runs around oidc-provider's routes (`provider.use`), in the order
 * http/tether_app.ts installs them. Per-request facts live in `ctx.state.tether`, read through the
 * typed accessors below.
 */

interface TetherRequestState {
  requestId: string;
  certificate: PeerCertificate | undefined;
}

function stateOf(ctx: Context): TetherRequestState {
  return (ctx.state as { tether: TetherRequestState }).tether;
}

/** The caller's client certificate resolved for this request (TLS socket or trusted proxy header). */
export function certificateOf(ctx: Context): PeerCertificate | undefined {
  return stateOf(ctx)?.certificate;
}

export function requestFactsOf(ctx: Context, instanceId: string): RequestFacts {
  return { requestId: stateOf(ctx)?.requestId ?? 'unknown', sourceAddress: ctx.req.socket.remoteAddress, instanceId };
}

/** Request id (honouring a well-formed X-Request-Id), access log, and a last-resort JSON 500. */
export function requestContext(logger: Logger) {
  return async function requestContextMiddleware(ctx: Context, next: Next): Promise<void> {
    const offered = ctx.get('x-request-id');
    const requestId = /^[\w.-]{1,64}$/.test(offered) ? offered : randomUUID();
    ctx.state.tether = { requestId, certificate: undefined } satisfies TetherRequestState;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    try {
      await next();
    } catch (error) {
      logger.error({ err: error, requestId }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'unexpected error' };
    }
    if (ctx.status >= 500 || logger.isLevelEnabled('debug')) {
      logger[ctx.status >= 500 ? 'warn' : 'debug']({
        requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round((performance.now() - started) * 10) / 10,
      }, 'request');
    }
  };
}

/**
 * /healthz: the process is up. /readyz: the database answers and every migration is applied, within
 * `readinessTimeoutMs` (else 503: a frozen database makes the instance unready, it does not hang the probe).
 */
export function healthEndpoints(knex: Knex, options: { readinessTimeoutMs?: number } = {}) {
  return async function healthEndpointsMiddleware(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return undefined;
    }
    if (ctx.path === '/readyz') {
      const readiness = await checkReadiness(knex, { timeoutMs: options.readinessTimeoutMs }).catch((error: Error) => ({ ok: false, reason: error.message }));
      ctx.status = readiness.ok ? 200 : 503;
      // RFC 9110 §10.2.3, as for every other 503 (this answer does not pass retryAfterOnUnavailable).
      if (!readiness.ok) ctx.set('Retry-After', '1');
      ctx.body = readiness.ok ? { status: 'ready' } : { status: 'not ready', reason: readiness.reason };
      return undefined;
    }
    return next();
  };
}

/**
 * Resolves the caller's certificate once per request, before oidc-provider runs. A malformed header
 * from a trusted proxy is the client's fault: 400 invalid_request, never a 500 and never a binding.
 */
export function resolveCallerCertificate(options: CallerCertificateOptions, logger: Logger) {
  return async function resolveCallerCertificateMiddleware(ctx: Context, next: Next): Promise<void> {
    try {
      stateOf(ctx).certificate = callerCertificate(ctx.req, options);
    } catch (error) {
      if (!(error instanceof BindingError)) throw error;
      logger.info({ requestId: stateOf(ctx).requestId, reason: error.message }, 'malformed client certificate header');
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: 'malformed client certificate header' };
      return;
    }
    await next();
  };
}

/** RFC 9110 §10.2.3: every 503 says when to come back. */
export async function retryAfterOnUnavailable(ctx: Context, next: Next): Promise<void> {
  await next();
  if (ctx.status === 503) ctx.set('Retry-After', '1');
}

/**
 * RFC 8705 §5 `mtls_endpoint_aliases` and Tether's support flags in discovery. oidc-provider builds
 * endpoint URLs from the request's origin, so each listener advertises its own endpoints; the aliases
 * always point at the listener that requests client certificates.
 */
export function discoveryAdditions(mtlsOrigin: string | undefined) {
  return async function discoveryAdditionsMiddleware(ctx: KoaContextWithOIDC, next: Next): Promise<void> {
    await next();
    if (ctx.oidc?.route !== 'discovery' || ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return;
    const body = ctx.body as Record<string, unknown>;
    body.tls_client_certificate_bound_access_tokens = true;
    // RFC 8707 has no discovery flag of its own; this is the name several servers use.
    body.resource_indicators_supported = true;
    if (mtlsOrigin) {
      const aliases: Record<string, string> = {};
      for (const name of ['token_endpoint', 'introspection_endpoint', 'revocation_endpoint'] as const) {
        const url = body[name];
        if (typeof url === 'string') aliases[name] = new URL(new URL(url).pathname, mtlsOrigin).href;
      }
      body.mtls_endpoint_aliases = aliases;
    }
  };
}

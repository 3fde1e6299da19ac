import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { BindingError } from '../binding/binding_error.js';
import type { CallerCertificateOptions } from '../binding/caller_certificate.js';
import { resolveRequestCertificate } from '../binding/request_certificate.js';
import type { RequestFacts } from '../ledger/events.js';
import { oauthErrorOf } from '../oauth/error_boundary.js';
import { Refusal } from '../oauth/refusal.js';
import { rememberRejection } from '../ledger/rejections.js';
import { FEDERATED_REGISTERED_AUTH_METHOD } from '../provider/client_metadata.js';
import type { ConfigSnapshot, LiveConfig } from '../provider/config_snapshot.js';
import { checkReadiness, type Readiness } from '../storage/health.js';
import { clientAddressOf, servedTargetOf, type ServedOrigins, type ServedTarget } from './request_origin.js';

/**
 * Koa middleware that runs around oidc-provider's routes (`provider.use`), in the order
 * http/tether_app.ts installs them. Per-request facts live in `ctx.state.tether`, read through the
 * typed accessors below.
 */

interface TetherRequestState {
  requestId: string;
  /** The client's address: the TCP peer's, or what a trusted proxy hop reports (servedOriginOnly). */
  clientAddress: string | undefined;
  /** The configuration this request runs with, read once as it arrived (provider/config_snapshot.ts). */
  snapshot: ConfigSnapshot;
}

function stateOf(ctx: Context): TetherRequestState {
  return (ctx.state as { tether: TetherRequestState }).tether;
}

/** The configuration snapshot the request pinned as it arrived; undefined before requestContext ran. */
export function pinnedSnapshotOf(ctx: Context): ConfigSnapshot | undefined {
  return stateOf(ctx)?.snapshot;
}

export function requestFactsOf(ctx: Context, instanceId: string): RequestFacts {
  const state = stateOf(ctx);
  return { requestId: state?.requestId ?? 'unknown', sourceAddress: state ? state.clientAddress : ctx.req.socket.remoteAddress, instanceId };
}

/**
 * Request id (honouring a well-formed X-Request-Id), the request's configuration snapshot, and a
 * last-resort JSON 500; the access log is observability/access_log.ts.
 */
export function requestContext(logger: Logger, live: LiveConfig) {
  return async function requestContextMiddleware(ctx: Context, next: Next): Promise<void> {
    const offered = ctx.get('x-request-id');
    const requestId = /^[\w.-]{1,64}$/.test(offered) ? offered : randomUUID();
    ctx.state.tether = { requestId, clientAddress: ctx.req.socket.remoteAddress, snapshot: live.current() } satisfies TetherRequestState;
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
    } catch (error) {
      logger.error({ err: error, requestId }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'unexpected error' };
    }
  };
}

/**
 * /healthz: the process is up. /readyz: the database answers and every migration is applied.
 *
 * Anyone may ask /readyz, so its body says only `{"status":"not ready","reason":"database"}` (or
 * `"migrations"`); the driver's error, which names the database host and port, goes to the log,
 * once per change of state rather than once per probe. The check is bounded by `readinessTimeoutMs`
 * (else 503: a frozen database makes the instance unready, it does not hang the probe).
 */
export function healthEndpoints(knex: Knex, logger: Logger, options: { readinessTimeoutMs?: number } = {}) {
  let reported: Readiness = { ok: true };
  const noteChange = (readiness: Readiness) => {
    const same = readiness.ok ? reported.ok : !reported.ok && reported.reason === readiness.reason;
    if (!same) {
      if (readiness.ok) logger.info('ready: the database answers and its schema is current');
      else logger.error({ reason: readiness.reason, detail: readiness.detail }, `not ready: ${readiness.detail}`);
    }
    reported = readiness;
  };
  return async function healthEndpointsMiddleware(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return undefined;
    }
    if (ctx.path === '/readyz') {
      const readiness = await checkReadiness(knex, { timeoutMs: options.readinessTimeoutMs }).catch((error: unknown): Readiness => (
        { ok: false, reason: 'database', detail: `readiness check failed: ${(error as Error)?.message ?? String(error)}` }));
      noteChange(readiness);
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
 * Answers only requests addressed to an origin Tether serves (http/request_origin.ts), and pins koa's
 * view of the request to that origin, so that every URL oidc-provider builds from the request
 * (`ctx.oidc.urlFor`, the DPoP `htu` it expects) is built from the checked origin. Also settles the
 * client's address: the peer's, or a trusted proxy hop's `X-Forwarded-For`.
 * koa's `app.proxy` stays off: it would believe `X-Forwarded-*` from every peer.
 */
export function servedOriginOnly(options: { served: ServedOrigins; isTrustedProxy(address: string): boolean }, logger: Logger) {
  return async function servedOriginOnlyMiddleware(ctx: Context, next: Next): Promise<void> {
    const { socket } = ctx.req;
    const fromTrustedProxy = socket.remoteAddress !== undefined && options.isTrustedProxy(socket.remoteAddress);
    const state = stateOf(ctx);
    if (fromTrustedProxy) state.clientAddress = clientAddressOf(ctx.req.headersDistinct, socket.remoteAddress, options.isTrustedProxy);
    const target = servedTargetOf(
      ctx.req,
      { encrypted: Boolean((socket as TLSSocket).encrypted), localPort: socket.localPort, fromTrustedProxy },
      options.served,
    );
    if (!target.ok) {
      logger.info({ requestId: state.requestId, reason: target.reason }, 'request for an origin this server does not serve');
      const error = oauthErrorOf(new Refusal('invalid_request', target.description, target.reason, { status: target.status }));
      rememberRejection(ctx, { error });
      ctx.status = target.status;
      ctx.body = { error: error.error, error_description: error.error_description };
      return;
    }
    pinRequestOrigin(ctx, target);
    await next();
  };
}

/**
 * koa derives `protocol`, `host` and `href` from the socket, the Host header and an absolute-form
 * target; from here on they are the served origin the request was checked against.
 */
function pinRequestOrigin(ctx: Context, target: ServedTarget): void {
  const origin = new URL(target.origin);
  if (target.originForm !== undefined) {
    ctx.url = target.originForm;
    ctx.originalUrl = target.originForm;
    ctx.request.originalUrl = target.originForm;
  }
  Object.defineProperties(ctx.request, {
    protocol: { value: origin.protocol.slice(0, -1) },
    host: { value: origin.host },
  });
}

/**
 * Resolves the caller's certificate once per request, before oidc-provider runs. A malformed header
 * from a trusted proxy is the client's fault: 400 invalid_request, never a 500 and never a binding.
 */
export function resolveCallerCertificate(options: CallerCertificateOptions, logger: Logger) {
  return async function resolveCallerCertificateMiddleware(ctx: Context, next: Next): Promise<void> {
    try {
      resolveRequestCertificate(ctx, options);
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
 * RFC 8705 §5 `mtls_endpoint_aliases` and Tether's support flags in discovery.
 *
 * RFC 8414 §3.3: the metadata names the issuer the client asked for, and every endpoint under it,
 * whichever listener answered. oidc-provider builds endpoint URLs from the request's (checked)
 * origin, which on a listener's own origin (the plain HTTP one, say) is not the issuer's: those URLs
 * are moved under the issuer's origin. The aliases point at the listener that requests client
 * certificates.
 */
export function discoveryAdditions(issuerOrigin: string, mtlsOrigin: string | undefined, useReportEndpoint?: string) {
  return async function discoveryAdditionsMiddleware(ctx: KoaContextWithOIDC, next: Next): Promise<void> {
    await next();
    if (ctx.oidc?.route !== 'discovery' || ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return;
    const body = ctx.body as Record<string, unknown>;
    advertiseUnder(body, new URL(ctx.href).origin, issuerOrigin);
    body.tls_client_certificate_bound_access_tokens = true;
    // `none` is enabled only for federated clients, which do present a credential (docs/federation.md).
    for (const name of ['token_endpoint_auth_methods_supported', 'introspection_endpoint_auth_methods_supported', 'revocation_endpoint_auth_methods_supported']) {
      if (Array.isArray(body[name])) body[name] = (body[name] as unknown[]).filter((method) => method !== FEDERATED_REGISTERED_AUTH_METHOD);
    }
    // RFC 8707 has no discovery flag of its own; this is the name several servers use.
    body.resource_indicators_supported = true;
    // Where APIs send what their verifiers saw (docs/use-reports.md); a name of Tether's own.
    if (useReportEndpoint) body.tether_use_report_endpoint = useReportEndpoint;
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

/** Rewrites every top-level URL under `requestOrigin` to the same path under `issuerOrigin`. */
function advertiseUnder(metadata: Record<string, unknown>, requestOrigin: string, issuerOrigin: string): void {
  if (requestOrigin === issuerOrigin) return;
  for (const [name, value] of Object.entries(metadata)) {
    if (typeof value === 'string' && value.startsWith(`${requestOrigin}/`)) metadata[name] = `${issuerOrigin}${value.slice(requestOrigin.length)}`;
  }
}

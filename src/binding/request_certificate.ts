import type { Context } from 'koa';
import { callerCertificate, type CallerCertificateOptions } from './caller_certificate.js';
import type { PresentedCertificate } from './presented_certificate.js';

/**
 * The caller's certificate of a request, resolved once before oidc-provider runs (http/middleware.ts
 * resolveCallerCertificate) and read by everything after it — oidc-provider's client authentication
 * (provider/create_provider.ts) and the binding of new tokens (token_binder.ts) — from koa's
 * per-request `ctx.state`, through this module only.
 */

interface CertificateState {
  tetherCertificate?: PresentedCertificate;
}

/**
 * Resolves and keeps the certificate of the request (see caller_certificate.ts).
 *
 * @throws BindingError `ERR_CLIENT_CERT_HEADER` when a trusted proxy sent a malformed header
 */
export function resolveRequestCertificate(ctx: Pick<Context, 'state' | 'req'>, options: CallerCertificateOptions): PresentedCertificate | undefined {
  return ((ctx.state as CertificateState).tetherCertificate = callerCertificate(ctx.req, options));
}

/** The caller's client certificate resolved for this request (TLS socket or trusted proxy header). */
export function certificateOf(ctx: Pick<Context, 'state'>): PresentedCertificate | undefined {
  return (ctx.state as CertificateState).tetherCertificate;
}

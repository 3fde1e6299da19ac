import type { IncomingMessage } from 'node:http';
import { certificateFromProxyHeaders, isTrustedProxy, type ProxyCertificateOptions } from './proxy_certificate.js';
import type { PresentedCertificate } from './presented_certificate.js';
import { peerCertificateOf } from './socket_certificate.js';

/** The certificate of the caller of a request; see {@link callerCertificate}. */
export type CallerCertificate = PresentedCertificate;

/** Options of {@link callerCertificate}. */
export interface CallerCertificateOptions {
  /** Accept a certificate forwarded by these TLS-terminating proxies; without it, only TLS counts. */
  proxy?: ProxyCertificateOptions;
}

/**
 * The certificate of whoever made `req`, the one function the server asks: the client certificate of
 * the TLS connection, or the one a trusted proxy forwarded in a header, or `undefined`.
 *
 * When a trusted proxy forwards a certificate, that certificate wins over the proxy's own TLS client
 * certificate: the hop speaks for the caller, and its own certificate identifies the hop. From any
 * other peer the header is ignored.
 *
 * @throws BindingError `ERR_CLIENT_CERT_HEADER` when a trusted proxy sent a malformed header
 * @throws BindingError `ERR_TRUSTED_PROXY_CONFIG` when `options.proxy` is invalid
 */
export function callerCertificate(req: IncomingMessage, options: CallerCertificateOptions = {}): CallerCertificate | undefined {
  const { proxy } = options;
  if (proxy && isTrustedProxy(req.socket.remoteAddress, proxy)) {
    const forwarded = certificateFromProxyHeaders(req.headers, req.socket.remoteAddress, proxy);
    if (forwarded) return forwarded;
  }
  return peerCertificateOf(req.socket);
}

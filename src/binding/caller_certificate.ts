import type { IncomingMessage } from 'node:http';
import { certificateFromProxyHeaders, type ProxyCertificateOptions } from './proxy_certificate.js';
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
  // certificateFromProxyHeaders already ignores the header from a peer that is not a trusted proxy.
  const forwarded = proxy && certificateFromProxyHeaders(req.headers, req.socket.remoteAddress, proxy);
  return forwarded || peerCertificateOf(req.socket);
}

import type { IncomingMessage } from 'node:http';
import { certificateFromProxyHeaders, isTrustedProxy, type ProxyCertificateOptions } from './proxy_certificate.js';
import type { PresentedCertificate } from './presented_certificate.js';
import { peerCertificateOf } from './socket_certificate.js';

/** Options of {@link callerCertificate}. */
export interface CallerCertificateOptions {
  /** Accept a certificate forwarded by these TLS-terminating proxies; without it, only TLS counts. */
  proxy?: ProxyCertificateOptions;
}

/**
 * The certificate of whoever made `req`, the one function the server asks: the client certificate of
 * the TLS connection, or the one a trusted proxy forwarded in a header, or `undefined`.
 *
 * From a trusted proxy the header is the only source (RFC 8705 §3, RFC 9440 §3): the hop's own TLS
 * client certificate identifies the hop, never the caller, so a request the hop forwards without a
 * certificate header has no client certificate. From any other peer the header is ignored and the
 * TLS client certificate counts.
 *
 * @throws BindingError `ERR_CLIENT_CERT_HEADER` when a trusted proxy sent a malformed header, or sent
 *   it more than once (RFC 9440 §4)
 * @throws BindingError `ERR_TRUSTED_PROXY_CONFIG` when `options.proxy` is invalid
 */
export function callerCertificate(req: IncomingMessage, options: CallerCertificateOptions = {}): PresentedCertificate | undefined {
  const { proxy } = options;
  const peer = req.socket.remoteAddress;
  if (proxy && isTrustedProxy(peer, proxy)) {
    // headersDistinct keeps every occurrence; req.headers would join a client's copy with the proxy's.
    return certificateFromProxyHeaders(req.headersDistinct, peer, proxy);
  }
  return peerCertificateOf(req.socket);
}

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { thumbprintOf } from './certificate_thumbprint.js';
import { presentedCertificate, type PresentedCertificate } from './presented_certificate.js';

// One entry per TLS connection; `null` records "no certificate". Reading and hashing the peer
// certificate on every request halved keep-alive throughput (DESIGN.md, measured), while the
// certificate of a connection cannot change: TLS 1.3 has no renegotiation and Node offers no
// post-handshake authentication. (A TLS 1.2 client could renegotiate with another certificate whose
// key it also holds; the cache keeps the first one, which it proved possession of as well.)
const certificates = new WeakMap<TLSSocket, PresentedCertificate | null>();

/**
 * The client certificate presented on a TLS connection, or `undefined` for a plain TCP socket or a
 * TLS client that sent none. Read once per connection and cached, so every request on a keep-alive
 * connection gets the same object.
 *
 * `authorized` is OpenSSL's verdict from the handshake against the listener's `ca` (the listener must
 * use `requestCert: true`, and `rejectUnauthorized: false` if self-signed certificates are accepted).
 */
export function peerCertificateOf(socket: Socket | TLSSocket): PresentedCertificate | undefined {
  if (!isTlsSocket(socket)) return undefined;
  const cached = certificates.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  const certificate = readPeerCertificate(socket);
  // Before the handshake has finished there is no certificate yet: remember nothing.
  if (certificate || socket.getPeerFinished() !== undefined) certificates.set(socket, certificate ?? null);
  return certificate;
}

function isTlsSocket(socket: Socket | TLSSocket): socket is TLSSocket {
  // Duck-typed rather than `instanceof`: sockets from another realm (test runners) still qualify.
  return (socket as TLSSocket).encrypted === true && typeof (socket as TLSSocket).getPeerX509Certificate === 'function';
}

function readPeerCertificate(socket: TLSSocket): PresentedCertificate | undefined {
  // getPeerX509Certificate() wraps the native handle; getPeerCertificate() would build a large object.
  const x509 = socket.getPeerX509Certificate();
  if (!x509) return undefined;
  const der = x509.raw;
  return presentedCertificate({
    source: 'tls',
    der,
    thumbprint: thumbprintOf(der),
    x509,
    authorized: socket.authorized === true,
    authorizationError: socket.authorized === true ? undefined : authorizationErrorOf(socket),
  });
}

function authorizationErrorOf(socket: TLSSocket): string {
  // Node sets a code string here although the typings say Error.
  const error: unknown = socket.authorizationError;
  if (typeof error === 'string') return error;
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return 'UNABLE_TO_VERIFY_LEAF_SIGNATURE';
}

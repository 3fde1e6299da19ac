import { X509Certificate } from 'node:crypto';

/** Where the caller's certificate came from. */
export type CertificateSource =
  /** The TLS handshake of this connection (the listener has `requestCert: true`). */
  | 'tls'
  /** A header set by a trusted TLS-terminating proxy (RFC 9440 or nginx's escaped PEM). */
  | 'proxy-header';

/**
 * A certificate the caller presented, with its RFC 8705 §3.1 thumbprint. Shared between requests
 * (one per TLS connection, or per distinct proxy header value): treat it, including `der`, as
 * read-only.
 */
export interface PresentedCertificate {
  readonly source: CertificateSource;
  /** The certificate's DER bytes. */
  readonly der: Buffer;
  /** `x5t#S256`: base64url(SHA-256(der)), the value bound into `cnf` (RFC 8705 §3.1). */
  readonly thumbprint: string;
  /** The parsed certificate (created on first access when not already at hand). */
  readonly x509: X509Certificate;
  /** The certificate as PEM (computed on first access). */
  readonly pem: string;
  /** The subject DN in Node's format (`CN=name`, one RDN per line). */
  readonly subject: string;
  /**
   * True when the certificate chains to a trusted CA and is valid now: for `tls`, the listener's
   * `ca` as checked by OpenSSL during the handshake; for `proxy-header`, the `ca` of the proxy options.
   * `self_signed_tls_client_auth` (RFC 8705 §2.2) does not need it; `tls_client_auth` (§2.1) does.
   */
  readonly authorized: boolean;
  /** Why `authorized` is false (an OpenSSL-style code such as `DEPTH_ZERO_SELF_SIGNED_CERT`). */
  readonly authorizationError: string | undefined;
}

/** Builds a {@link PresentedCertificate} whose costly views (`x509`, `pem`) are computed on demand. */
export function presentedCertificate(fields: {
  source: CertificateSource;
  der: Buffer;
  thumbprint: string;
  authorized: boolean;
  authorizationError: string | undefined;
  x509?: X509Certificate;
}): PresentedCertificate {
  return new LazyPresentedCertificate(fields);
}

class LazyPresentedCertificate implements PresentedCertificate {
  readonly source: CertificateSource;
  readonly der: Buffer;
  readonly thumbprint: string;
  readonly authorized: boolean;
  readonly authorizationError: string | undefined;
  #x509: X509Certificate | undefined;
  #pem: string | undefined;

  constructor(fields: Parameters<typeof presentedCertificate>[0]) {
    this.source = fields.source;
    this.der = fields.der;
    this.thumbprint = fields.thumbprint;
    this.authorized = fields.authorized;
    this.authorizationError = fields.authorizationError;
    this.#x509 = fields.x509;
    Object.freeze(this);
  }

  get x509(): X509Certificate {
    return (this.#x509 ??= new X509Certificate(this.der));
  }

  get pem(): string {
    return (this.#pem ??= this.x509.toString());
  }

  get subject(): string {
    return this.x509.subject;
  }
}

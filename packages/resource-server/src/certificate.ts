/**
 * Client certificate thumbprints (RFC 8705 §3.1): `x5t#S256` is the base64url-encoded SHA-256 of
 * the DER encoding of the certificate.
 *
 * @module
 */
import { isCanonicalBase64url } from './base64url.js';
import { VerifierError } from './errors.js';
import { sha256Base64url } from './sha256.js';

/**
 * A presented client certificate: DER bytes, a PEM `CERTIFICATE` block, or an already computed
 * `x5t#S256` thumbprint (43 base64url characters).
 */
export type ClientCertificateInput = Uint8Array | string;

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** An ASN.1 DER certificate starts with a SEQUENCE tag. */
const DER_SEQUENCE = 0x30;

/** base64url SHA-256 of the DER certificate. */
export function thumbprintOfDer(der: Uint8Array): string {
  return sha256Base64url(der);
}

/** Decodes the first PEM `CERTIFICATE` block to DER, or returns `undefined` when there is none. */
export function pemToDer(pem: string): Buffer | undefined {
  const match = PEM_BLOCK.exec(pem);
  const body = match?.[1]?.replace(/\s+/g, '');
  if (body === undefined || body.length === 0 || !BASE64.test(body)) return undefined;
  const der = Buffer.from(body, 'base64');
  return der[0] === DER_SEQUENCE ? der : undefined;
}

/**
 * The `x5t#S256` thumbprint of a presented certificate; rejects with `ERR_CERTIFICATE_INVALID`
 * when the input is none of DER, PEM or a thumbprint.
 */
export function certificateThumbprint(certificate: ClientCertificateInput): string {
  if (typeof certificate !== 'string') {
    if (certificate.length === 0 || certificate[0] !== DER_SEQUENCE) {
      throw new VerifierError('ERR_CERTIFICATE_INVALID', 'client certificate is not DER');
    }
    return thumbprintOfDer(certificate);
  }
  if (certificate.includes('-----BEGIN')) {
    const der = pemToDer(certificate);
    if (der === undefined) throw new VerifierError('ERR_CERTIFICATE_INVALID', 'client certificate PEM is malformed');
    return thumbprintOfDer(der);
  }
  // 32 bytes of SHA-256 are 43 base64url characters.
  if (certificate.length === 43 && isCanonicalBase64url(certificate)) return certificate;
  throw new VerifierError('ERR_CERTIFICATE_INVALID', 'client certificate is neither DER, PEM nor a thumbprint');
}

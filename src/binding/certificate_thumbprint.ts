import { sha256Base64url } from '../text/sha256.js';

/**
 * The RFC 8705 §3.1 `x5t#S256` thumbprint of a certificate: base64url (no padding) of the SHA-256
 * digest of its DER encoding. This is the value carried in an access token's `cnf` claim and compared
 * by resource servers against the TLS client certificate.
 *
 * @param der - the certificate's DER bytes (not PEM)
 * @returns the unpadded base64url thumbprint, 43 characters long
 */
export function thumbprintOf(der: Uint8Array): string {
  return sha256Base64url(der);
}

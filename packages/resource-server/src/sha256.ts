/**
 * The one SHA-256 → base64url helper of the package: certificate thumbprints (RFC 8705 §3.1), `ath`
 * (RFC 9449 §4.2) and the synchronous JWK thumbprint (RFC 7638).
 *
 * @module
 */
import { createHash } from 'node:crypto';

/** base64url (no padding) of the SHA-256 of `bytes`. */
export function sha256Base64url(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('base64url');
}

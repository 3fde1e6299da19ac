import { sha256Base64url } from '../text/sha256.js';

/**
 * SHA-256 of a secret-bearing identifier, base64url. Opaque token ids, user codes and replay keys
 * are stored only in this form, so a copy of the table grants nothing.
 */
export function hashIdentifier(value: string): string {
  return sha256Base64url(value);
}

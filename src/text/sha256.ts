import { createHash } from 'node:crypto';

/**
 * base64url (RFC 4648 §5, unpadded) of the SHA-256 digest of `data` (a string as UTF-8): the one
 * form behind RFC 8705 §3.1 `x5t#S256`, RFC 9449 §4.2 `ath`, and the hashed identifiers stored in
 * the database (storage/hash_id.ts).
 */
export function sha256Base64url(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

import { createHash } from 'node:crypto';

/**
 * SHA-256 of a secret-bearing identifier, base64url. Opaque token ids, user codes and replay keys
 * are stored only in this form, so a copy of the table grants nothing.
 */
export function hashIdentifier(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

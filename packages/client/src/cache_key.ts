/**
 * The identity of a cache entry. Two requests share a token only when every part is identical:
 * issuer, client, binding key, resource (as an exact string), scope set (normalized) and, for an
 * exchanged token, the token it was exchanged from.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { NormalizedAccessRequest } from './access_request.js';

/** Who holds the token: one client of one issuer, with one binding key. */
export interface TokenHolder {
  readonly issuer: string;
  readonly clientId: string;
  /**
   * The binding key: `jkt:<RFC 7638 thumbprint>` for DPoP, `x5t#S256:<thumbprint>` for a
   * certificate, `bearer` for none.
   */
  readonly bindingKey: string;
}

/**
 * The cache key of `request` for `holder`. A JSON array: no choice of resource, scope or client id
 * strings can make two different tuples encode alike (JSON escapes every delimiter).
 */
export function tokenCacheKey(holder: TokenHolder, request: NormalizedAccessRequest, subjectTokenHash?: string): string {
  return JSON.stringify([holder.issuer, holder.clientId, holder.bindingKey, request.resource, request.scopes, subjectTokenHash ?? null]);
}

/** SHA-256 of a subject token: the key names it without holding it. */
export function subjectTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

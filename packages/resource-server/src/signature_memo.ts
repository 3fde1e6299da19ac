/**
 * Signatures already checked: the compact JWS strings whose signature one key verified, so that the
 * same token presented again is not put through the curve arithmetic again.
 *
 * A client keeps its access token for its whole lifetime and sends it with every request, so an API
 * sees each token many times; its signature is the one costly step (docs/benchmarks.md, pair 4),
 * and it is a pure function of the token's exact string and the key. The memo is keyed by both:
 * - the exact string: segments are canonical base64url (compact_jws.ts), so equal strings are equal
 *   bytes, equal signing input and equal signature, and a token has only one spelling;
 * - the key object the issuer's JWKS resolves to today: a key removed from the set, or a set fetched
 *   again (jwks_cache.ts makes new key objects per fetch), no longer matches, and the signature is
 *   checked again, against the key the set has now.
 * Only a signature that verified is recorded, so a forged token never enters; everything else
 * (shape, header, claims, expiry, binding, revocation, scopes) is still checked on every request.
 * Envoy's `jwt_authn` filter keeps such a cache of verified tokens too (`jwt_cache_config`).
 *
 * @module
 */
import type { VerificationKey } from './jws_signature.js';

/** The compact JWS strings whose signature a key has verified (bounded; the oldest leave first). */
export interface SignatureMemo {
  /** True when `compact`'s signature was verified with this very key object. */
  verifiedWith(compact: string, key: VerificationKey): boolean;
  /** Records that `compact`'s signature verified with `key`; only ever called after it did. */
  record(compact: string, key: VerificationKey): void;
}

/**
 * A memo of at most `maxEntries` tokens, or `undefined` for 0 (every signature checked each time).
 * Memory is bounded by `maxEntries` × the largest token accepted.
 */
export function createSignatureMemo(maxEntries: number): SignatureMemo | undefined {
  if (maxEntries === 0) return undefined;
  // Insertion order is the eviction order: the least recently first seen token goes first.
  const verified = new Map<string, VerificationKey>();
  return {
    verifiedWith(compact, key) {
      return verified.get(compact) === key;
    },
    record(compact, key) {
      // A token verified again under a newer key object moves to the back with it.
      verified.delete(compact);
      verified.set(compact, key);
      if (verified.size > maxEntries) verified.delete(verified.keys().next().value as string);
    },
  };
}

/**
 * Protected headers already parsed: the encoded header segments of tokens whose signature verified,
 * with the header each one decodes to, so that the next token under the same header skips its
 * base64url decoding and JSON parsing.
 *
 * An issuer signs every access token under one key with the same header (`{"alg":"ES256",
 * "typ":"at+jwt","kid":"…"}`), so a verifier sees a handful of header segments, token after token;
 * decoding and parsing one is a tenth of what verify() spends beside the signature
 * (docs/benchmarks.md, pair 4). The header is a pure function of the segment's exact string
 * (canonical base64url, compact_jws.ts). Only the segment of a token whose signature verified is
 * remembered, so a caller cannot fill the memo with headers of its own making, and every rule of the
 * header (algorithm, `crit`, `kid`, `typ`) is still applied to it on every token. The headers kept
 * are frozen: every token that shares one gets the same object.
 *
 * @module
 */
import type { JsonObject } from './compact_jws.js';

/** Header segments and the headers they decode to (bounded; the oldest leave first). */
export interface HeaderMemo {
  /** The header `segment` decodes to, when a verified token had it. */
  headerOf(segment: string): JsonObject | undefined;
  /** Records the header of a token whose signature verified; only ever called after it did. */
  record(segment: string, header: JsonObject): void;
}

/** A memo of at most `maxEntries` header segments (a few keys and token types per issuer). */
export function createHeaderMemo(maxEntries = 16): HeaderMemo {
  // Insertion order is the eviction order.
  const headers = new Map<string, JsonObject>();
  return {
    headerOf: (segment) => headers.get(segment),
    record(segment, header) {
      if (headers.has(segment)) return;
      headers.set(segment, deepFreeze(header));
      if (headers.size > maxEntries) headers.delete(headers.keys().next().value as string);
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

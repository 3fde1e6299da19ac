/**
 * Strict base64url (RFC 4648 §5, no padding) for JWS segments, checked before jose decodes them.
 *
 * Node's decoder (and jose's) is lenient: it skips characters outside the alphabet and ignores non-zero
 * trailing bits, so `abc`, `abd` and `ab=c` can all decode to the same bytes. For a signature that
 * would make one valid token have many accepted spellings (a different string for the same
 * signature), which breaks anything keyed on the token string (introspection caches, replay
 * records, ledgers). Only the canonical encoding is accepted here.
 *
 * @module
 */

const ALPHABET = /^[A-Za-z0-9_-]*$/;

/** Value (0–63) of each base64url character, indexed by char code; -1 outside the alphabet. */
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  VALUE['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)] = i;
}

/** True when `s` is a canonical unpadded base64url string (RFC 7515 §2 `BASE64URL`). */
export function isCanonicalBase64url(s: string): boolean {
  return ALPHABET.test(s) && hasCanonicalEnd(s, 0, s.length);
}

/**
 * For `s.slice(start, end)`, already known to be in the base64url alphabet: true when its length
 * and its last character are those of a canonical encoding. A caller that checked the alphabet of
 * a whole compact JWS at once checks each segment's end with this, without copying it.
 */
export function hasCanonicalEnd(s: string, start: number, end: number): boolean {
  const rest = (end - start) % 4;
  // A single leftover character carries 6 bits: never a whole byte, so never valid.
  if (rest === 1) return false;
  if (rest === 0) return true;
  // The unused low bits of the last character must be zero (RFC 4648 §3.5 canonical encoding).
  const last = VALUE[s.charCodeAt(end - 1)] ?? -1;
  const unusedBitsMask = rest === 2 ? 0x0f : 0x03;
  return (last & unusedBitsMask) === 0;
}

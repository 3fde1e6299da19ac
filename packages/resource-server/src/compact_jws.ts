/**
 * What is checked of a JWS Compact Serialization (RFC 7515 §7.1) before its signature is: its size,
 * its shape, that every segment is canonical base64url and that the header is a JSON object.
 *
 * Used for both access tokens and DPoP proofs; the caller supplies the error codes so that a bad
 * proof reports `invalid_dpop_proof` and a bad token `invalid_token`.
 *
 * @module
 */
import { hasCanonicalEnd } from './base64url.js';
import { VerifierError, type VerifierErrorCode } from './errors.js';
import type { HeaderMemo } from './header_memo.js';

/** A JSON object as it came off the wire: nothing about its members is known yet. */
export type JsonObject = { readonly [member: string]: unknown };

/** The error codes a shape failure maps to. */
export interface JwsErrorCodes {
  readonly tooLarge: VerifierErrorCode;
  readonly malformed: VerifierErrorCode;
  readonly encrypted: VerifierErrorCode;
}

/** A compact JWS split into what its verification needs; nothing in it is verified yet. */
export interface CompactJws {
  /** The protected header, parsed (a JSON object). */
  readonly header: JsonObject;
  /** The protected header as it came, encoded. */
  readonly headerSegment: string;
  /** The ASCII bytes of `BASE64URL(header) '.' BASE64URL(payload)` (RFC 7515 §5.2 step 8). */
  readonly signingInput: Buffer;
  /** The payload segment, still encoded. */
  readonly payload: string;
  /** The signature bytes (possibly empty). */
  readonly signature: Buffer;
}

/**
 * The characters of a compact JWS: three segments in the base64url alphabet, the header and payload
 * not empty. One scan of the whole string; each segment's end is then checked on its own.
 */
const COMPACT_JWS_ALPHABET = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Refuses oversize input first, then anything that is not exactly three canonical base64url
 * segments with a JSON object for a header; returns the parts, unverified.
 */
export function parseCompactJws(compact: string, maxBytes: number, codes: JwsErrorCodes, what: string, headers?: HeaderMemo): CompactJws {
  // The size check comes before any decoding or parsing, so that a huge value costs nothing.
  if (compact.length > maxBytes) throw new VerifierError(codes.tooLarge, `${what} is too large`);
  if (!COMPACT_JWS_ALPHABET.test(compact)) {
    // RFC 7516 §7.1: five segments is a JWE. Encrypted tokens are not accepted: Tether signs only.
    if (compact.split('.').length === 5) throw new VerifierError(codes.encrypted, `${what} is encrypted (JWE); only signed tokens are accepted`);
    throw new VerifierError(codes.malformed, `${what} is not a compact JWS`);
  }
  const headerEnd = compact.indexOf('.');
  const payloadEnd = compact.indexOf('.', headerEnd + 1);
  // Node's base64 decoder ignores non-zero trailing bits, so one signature would have several
  // spellings; only the canonical one is accepted, or anything keyed on the token string (replay
  // records, caches, ledgers) could be given the same token under another name.
  // An empty signature is left for the algorithm check to refuse (`alg: none` gets ERR_*_ALGORITHM).
  if (!hasCanonicalEnd(compact, 0, headerEnd) || !hasCanonicalEnd(compact, headerEnd + 1, payloadEnd) || !hasCanonicalEnd(compact, payloadEnd + 1, compact.length)) {
    throw new VerifierError(codes.malformed, `${what} is not a compact JWS`);
  }
  const headerSegment = compact.slice(0, headerEnd);
  const parsed = headers?.headerOf(headerSegment) ?? decodeJsonObject(headerSegment);
  if (parsed === undefined) throw new VerifierError(codes.malformed, `${what} header is not a JSON object`);
  // Every character is in the base64url alphabet (checked above): latin1 is the exact ASCII bytes.
  const signingInput = Buffer.from(compact.slice(0, payloadEnd), 'latin1');
  return {
    header: parsed,
    headerSegment,
    signingInput,
    payload: compact.slice(headerEnd + 1, payloadEnd),
    signature: Buffer.from(compact.slice(payloadEnd + 1), 'base64url'),
  };
}

/**
 * A base64url segment's JSON, when it is a plain object. Node's decoder skips what is not base64url:
 * a caller that needs the segment canonical checks it first (parseCompactJws does).
 */
export function decodeJsonObject(segment: string): JsonObject | undefined {
  return jsonObjectOf(Buffer.from(segment, 'base64url').toString('utf8'));
}

/** The (unverified) protected header of a compact JWS, after the checks of {@link parseCompactJws}. */
export function protectedHeaderOf(compact: string, maxBytes: number, codes: JwsErrorCodes, what: string): JsonObject {
  return parseCompactJws(compact, maxBytes, codes, what).header;
}

/** Parses UTF-8 JSON and returns it only when it is a plain object (not an array, null or scalar). */
export function parseJsonObject(bytes: Uint8Array): JsonObject | undefined {
  return jsonObjectOf(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
}

function jsonObjectOf(text: string): JsonObject | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}

/**
 * True when the `typ` header names `expected` (RFC 7515 §4.1.9): media types compare
 * case-insensitively and the `application/` prefix may be omitted, so `dpop+jwt`, `DPOP+JWT` and
 * `application/dpop+jwt` are the same type (RFC 9449 §4.2).
 */
export function typIs(typ: unknown, expected: string): boolean {
  if (typeof typ !== 'string') return false;
  const lower = typ.toLowerCase();
  return lower === expected || lower === `application/${expected}`;
}

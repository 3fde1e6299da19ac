/**
 * Parsing of JWS Compact Serialization (RFC 7515 §7.1) before any cryptography.
 *
 * Used for both access tokens and DPoP proofs; the caller supplies the error codes so that a bad
 * proof reports `invalid_dpop_proof` and a bad token `invalid_token`.
 *
 * @module
 */
import { decodeBase64url } from './base64url.js';
import { VerifierError, type VerifierErrorCode } from './errors.js';

/** A JSON object as it came off the wire: nothing about its members is known yet. */
export type JsonObject = { readonly [member: string]: unknown };

/** The error codes a parse failure maps to. */
export interface JwsErrorCodes {
  readonly tooLarge: VerifierErrorCode;
  readonly malformed: VerifierErrorCode;
  readonly encrypted: VerifierErrorCode;
}

/** A compact JWS split into its parts; the signature has not been checked. */
export interface ParsedJws {
  readonly header: JsonObject;
  /** `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers (RFC 7515 §5.2). */
  readonly signingInput: Buffer;
  readonly payloadSegment: string;
  readonly signature: Buffer;
}

/**
 * Splits and decodes a compact JWS, refusing oversize input first and anything that is not exactly
 * three canonical base64url segments.
 */
export function parseCompactJws(compact: string, maxBytes: number, codes: JwsErrorCodes, what: string): ParsedJws {
  // The size check comes before any decoding or parsing, so that a huge value costs nothing.
  if (compact.length > maxBytes) throw new VerifierError(codes.tooLarge, `${what} is too large`);
  const first = compact.indexOf('.');
  const second = first === -1 ? -1 : compact.indexOf('.', first + 1);
  if (second === -1) throw new VerifierError(codes.malformed, `${what} is not a compact JWS`);
  if (compact.indexOf('.', second + 1) !== -1) {
    // RFC 7516 §7.1: five segments is a JWE. Encrypted tokens are not accepted: Tether signs only.
    const segments = compact.split('.').length;
    throw new VerifierError(
      segments === 5 ? codes.encrypted : codes.malformed,
      segments === 5 ? `${what} is encrypted (JWE); only signed tokens are accepted` : `${what} is not a compact JWS`,
    );
  }
  const headerSegment = compact.slice(0, first);
  const payloadSegment = compact.slice(first + 1, second);
  const signatureSegment = compact.slice(second + 1);
  const headerBytes = decodeBase64url(headerSegment);
  const signature = decodeBase64url(signatureSegment);
  // An empty signature is left for the algorithm check to refuse (`alg: none` gets ERR_*_ALGORITHM).
  if (headerBytes === undefined || signature === undefined || payloadSegment.length === 0) {
    throw new VerifierError(codes.malformed, `${what} is not a compact JWS`);
  }
  const header = parseJsonObject(headerBytes);
  if (header === undefined) throw new VerifierError(codes.malformed, `${what} header is not a JSON object`);
  return { header, signingInput: Buffer.from(compact.slice(0, second), 'latin1'), payloadSegment, signature };
}

/**
 * Decodes the payload segment as a JSON object; call only after the signature is verified, so that
 * an unauthenticated payload is never parsed.
 */
export function decodeJsonPayload(jws: ParsedJws, code: VerifierErrorCode, what: string): JsonObject {
  const bytes = decodeBase64url(jws.payloadSegment);
  const payload = bytes === undefined ? undefined : parseJsonObject(bytes);
  if (payload === undefined) throw new VerifierError(code, `${what} payload is not a JSON object`);
  return payload;
}

/** Parses UTF-8 JSON and returns it only when it is a plain object (not an array, null or scalar). */
export function parseJsonObject(bytes: Buffer): JsonObject | undefined {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}

/**
 * True when the `typ` header names `expected` (RFC 7515 §4.1.9): media types compare
 * case-insensitively and the `application/` prefix may be omitted, so `at+jwt`, `AT+JWT` and
 * `application/at+jwt` are the same type (RFC 9068 §2.1, §4).
 */
export function typIs(typ: unknown, expected: string): boolean {
  if (typeof typ !== 'string') return false;
  const lower = typ.toLowerCase();
  return lower === expected || lower === `application/${expected}`;
}

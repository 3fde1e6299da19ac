/**
 * The signature of a JWS (RFC 7515 §5.2 step 8), checked with node:crypto's synchronous `verify`
 * against a key the issuer's JWKS gave (never one a token names).
 *
 * This is the one step of access-token verification that is hand-written instead of left to jose:
 * jose verifies through WebCrypto, whose hand-off to the thread pool costs more than the check
 * itself for one small signature (docs/benchmarks.md, pair 4: the signature step and the verifier
 * against node:crypto's synchronous verify). Key selection and import stay jose's
 * (`createLocalJWKSet` in jwks_cache.ts); this module only turns the selected key into a
 * `KeyObject`, once, and checks that it is the kind of key the algorithm needs.
 *
 * @module
 */
import { constants, KeyObject, verify, type VerifyKeyObjectInput, type webcrypto } from 'node:crypto';
import type { SupportedAlgorithm } from './algorithms.js';

/** A public key ready to verify signatures of one algorithm. */
export interface VerificationKey {
  readonly alg: SupportedAlgorithm;
  /**
   * What node:crypto's `verify` is given: the `KeyObject` itself, or, where the algorithm needs a
   * padding other than the key's default (PSS), the key with that option.
   */
  readonly key: KeyObject | VerifyKeyObjectInput;
}

interface Scheme {
  /** The digest node:crypto signs with; `null` for EdDSA, which hashes internally. */
  readonly hash: string | null;
  /** node:crypto's key type (`asymmetricKeyType`) and, for EC, the curve the algorithm requires. */
  readonly keyTypes: readonly string[];
  readonly namedCurve?: string;
  /**
   * ECDSA (RFC 7518 §3.4): the signature is R || S, each this many bytes; it is re-encoded as the
   * DER `ECDSA-Sig-Value` OpenSSL reads.
   */
  readonly ecdsaIntegerBytes?: number;
  /** Exact signature length of EdDSA (RFC 8032 §5.1.6). */
  readonly signatureBytes?: number;
  /** Options beyond the key (PSS padding); absent, the `KeyObject` is passed alone. */
  readonly options?: Omit<VerifyKeyObjectInput, 'key'>;
}

// RFC 7518 §3.5: PSS with MGF1 over the same hash and a salt as long as the hash.
const PSS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } as const;
const RSA_TYPES = ['rsa', 'rsa-pss'] as const;
const MIN_RSA_MODULUS_BITS = 2048;

/**
 * RFC 7518 §3.1 (RS, ES, PS) and RFC 8037 §3.1 / RFC 9864 (EdDSA, Ed25519). RSASSA-PKCS1-v1_5 is
 * node:crypto's default for an RSA key, DER its default encoding of an ECDSA signature.
 */
const SCHEMES: Readonly<Record<SupportedAlgorithm, Scheme>> = {
  ES256: { hash: 'sha256', keyTypes: ['ec'], namedCurve: 'prime256v1', ecdsaIntegerBytes: 32 },
  ES384: { hash: 'sha384', keyTypes: ['ec'], namedCurve: 'secp384r1', ecdsaIntegerBytes: 48 },
  ES512: { hash: 'sha512', keyTypes: ['ec'], namedCurve: 'secp521r1', ecdsaIntegerBytes: 66 },
  PS256: { hash: 'sha256', keyTypes: RSA_TYPES, options: PSS },
  PS384: { hash: 'sha384', keyTypes: RSA_TYPES, options: PSS },
  PS512: { hash: 'sha512', keyTypes: RSA_TYPES, options: PSS },
  RS256: { hash: 'sha256', keyTypes: ['rsa'] },
  RS384: { hash: 'sha384', keyTypes: ['rsa'] },
  RS512: { hash: 'sha512', keyTypes: ['rsa'] },
  EdDSA: { hash: null, keyTypes: ['ed25519'], signatureBytes: 64 },
  Ed25519: { hash: null, keyTypes: ['ed25519'], signatureBytes: 64 },
};

/**
 * The node:crypto form of a public key jose selected (or imported) for `alg`; `undefined` when it is
 * not a public key of the type (and curve) `alg` needs, which jose's selection should already have
 * made impossible (checked again here because the signature step trusts it), or an RSA key too
 * short to be used.
 */
export function verificationKeyOf(alg: SupportedAlgorithm, imported: webcrypto.CryptoKey): VerificationKey | undefined {
  // jose imports public keys extractable; node:crypto deprecates converting one that is not.
  if (imported.type !== 'public' || !imported.extractable) return undefined;
  const key = KeyObject.from(imported);
  const scheme = SCHEMES[alg];
  if (key.asymmetricKeyType === undefined || !scheme.keyTypes.includes(key.asymmetricKeyType)) return undefined;
  if (scheme.namedCurve !== undefined && key.asymmetricKeyDetails?.namedCurve !== scheme.namedCurve) return undefined;
  // RFC 7518 §3.3 and §3.5: RSA keys shorter than 2048 bits must not be used.
  if (key.asymmetricKeyType.startsWith('rsa') && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_MODULUS_BITS) return undefined;
  return { alg, key: scheme.options === undefined ? key : { key, ...scheme.options } };
}

/**
 * True when `signature` is `key`'s signature of `signingInput` (the ASCII bytes of
 * `BASE64URL(header) '.' BASE64URL(payload)`) under `alg`, which must be the key's own.
 */
export function isValidSignature(alg: SupportedAlgorithm, key: VerificationKey, signingInput: Uint8Array, signature: Uint8Array): boolean {
  // A key is only ever used with the algorithm it was resolved for (RFC 8725 §3.1).
  if (key.alg !== alg) return false;
  const scheme = SCHEMES[alg];
  if (scheme.signatureBytes !== undefined && signature.byteLength !== scheme.signatureBytes) return false;
  let encoded = signature;
  if (scheme.ecdsaIntegerBytes !== undefined) {
    // RFC 7518 §3.4: exactly 2 × the curve's byte length, or it is not a JWS ECDSA signature.
    if (signature.byteLength !== 2 * scheme.ecdsaIntegerBytes) return false;
    encoded = ecdsaSignatureToDer(signature, scheme.ecdsaIntegerBytes);
  }
  try {
    // The KeyObject is passed alone where it can be: node:crypto's `verify` takes ~20 µs longer per
    // call when given `{ key, dsaEncoding: 'ieee-p1363' }` instead (docs/benchmarks.md, pair 4).
    return verify(scheme.hash, signingInput, key.key, encoded);
  } catch {
    // OpenSSL refuses some malformed signatures (an RSA signature longer than the modulus) by throwing.
    return false;
  }
}

/**
 * R || S (two big-endian integers of `size` bytes) as DER: SEQUENCE { INTEGER r, INTEGER s }
 * (RFC 3279 §2.2.3), each INTEGER minimal and positive (X.690 §8.3). The mapping is one-to-one, so a
 * JWS signature has exactly one DER form and no other spelling of it verifies.
 */
export function ecdsaSignatureToDer(signature: Uint8Array, size: number): Uint8Array {
  const r = signature.subarray(0, size);
  const s = signature.subarray(size, 2 * size);
  const rLength = derIntegerLength(r);
  const sLength = derIntegerLength(s);
  const content = 2 + rLength + 2 + sLength;
  // P-521's content can exceed 127 bytes: the long form with one length byte (X.690 §8.1.3.5).
  const header = content < 0x80 ? 2 : 3;
  const der = Buffer.allocUnsafe(header + content);
  der[0] = 0x30;
  if (header === 2) der[1] = content;
  else {
    der[1] = 0x81;
    der[2] = content;
  }
  const afterR = writeDerInteger(der, header, r, rLength);
  writeDerInteger(der, afterR, s, sLength);
  return der;
}

/** Index of the first byte kept of a big-endian unsigned integer: leading zeros dropped, one kept for zero. */
function firstSignificant(value: Uint8Array): number {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  return start;
}

/** The length of a DER INTEGER's contents for an unsigned value: a 0x00 is prefixed when the top bit is set. */
function derIntegerLength(value: Uint8Array): number {
  const start = firstSignificant(value);
  return value.length - start + ((value[start] as number) & 0x80 ? 1 : 0);
}

function writeDerInteger(der: Buffer, at: number, value: Uint8Array, length: number): number {
  der[at] = 0x02;
  der[at + 1] = length;
  const start = firstSignificant(value);
  const digits = value.length - start;
  if (length > digits) der[at + 2] = 0;
  der.set(value.subarray(start), at + 2 + length - digits);
  return at + 2 + length;
}

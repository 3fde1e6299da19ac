/**
 * The asymmetric JWS algorithms the verifier can check, and the WebCrypto calls behind each.
 *
 * Only asymmetric algorithms exist in this table: `none` (RFC 7518 §3.6) and the HMAC family are
 * absent, so no configuration can enable them, and an HS256 token "keyed" with a public key's bytes
 * (the classic algorithm-confusion attack) has nothing to be verified with.
 *
 * Each algorithm fixes the key type and curve it may be used with (RFC 7518 §3.4, RFC 8037 §3.1):
 * WebCrypto alone would happily verify an `ES256` signature with a P-384 key.
 *
 * @module
 */
import { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;

/** A JWS algorithm identifier this verifier supports. */
export type SupportedAlgorithm =
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'EdDSA'
  | 'Ed25519';

interface AlgorithmSpec {
  readonly kty: 'EC' | 'RSA' | 'OKP';
  readonly crv?: string;
  readonly importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams | webcrypto.Algorithm;
  readonly verifyParams: webcrypto.EcdsaParams | webcrypto.RsaPssParams | webcrypto.Algorithm;
  /** Exact signature length in bytes where the algorithm fixes it (ECDSA, EdDSA). */
  readonly signatureLength?: number;
}

const SPECS: Readonly<Record<SupportedAlgorithm, AlgorithmSpec>> = {
  ES256: ecdsa('P-256', 'SHA-256', 64),
  ES384: ecdsa('P-384', 'SHA-384', 96),
  ES512: ecdsa('P-521', 'SHA-512', 132),
  PS256: rsaPss('SHA-256', 32),
  PS384: rsaPss('SHA-384', 48),
  PS512: rsaPss('SHA-512', 64),
  RS256: rsaPkcs1('SHA-256'),
  RS384: rsaPkcs1('SHA-384'),
  RS512: rsaPkcs1('SHA-512'),
  // RFC 8037 §3.1 `EdDSA` and its fully specified successor `Ed25519`; Ed448 is not supported.
  EdDSA: { kty: 'OKP', crv: 'Ed25519', importParams: { name: 'Ed25519' }, verifyParams: { name: 'Ed25519' }, signatureLength: 64 },
  Ed25519: { kty: 'OKP', crv: 'Ed25519', importParams: { name: 'Ed25519' }, verifyParams: { name: 'Ed25519' }, signatureLength: 64 },
};

function ecdsa(namedCurve: string, hash: string, signatureLength: number): AlgorithmSpec {
  return { kty: 'EC', crv: namedCurve, importParams: { name: 'ECDSA', namedCurve }, verifyParams: { name: 'ECDSA', hash }, signatureLength };
}

function rsaPss(hash: string, saltLength: number): AlgorithmSpec {
  // RFC 7518 §3.5: the salt is as long as the hash output.
  return { kty: 'RSA', importParams: { name: 'RSA-PSS', hash }, verifyParams: { name: 'RSA-PSS', saltLength } };
}

function rsaPkcs1(hash: string): AlgorithmSpec {
  return { kty: 'RSA', importParams: { name: 'RSASSA-PKCS1-v1_5', hash }, verifyParams: { name: 'RSASSA-PKCS1-v1_5' } };
}

/** RFC 7518 §3.3 and §3.5: RSA keys shorter than 2048 bits must not be used. */
const MIN_RSA_MODULUS_BITS = 2048;

/**
 * What a verifier accepts when not told otherwise: the algorithms a Tether server signs with and
 * accepts in DPoP proofs — ES256, PS256, and Ed25519 under both its names, `EdDSA` (RFC 8037) and
 * the fully specified `Ed25519` (RFC 9864) that current clients (oauth4webapi, openid-client) send.
 * This package imports nothing from the server, so the list is written out here; a test keeps it
 * equal to the server's (test/grants/jws_algorithms.test.ts).
 */
export const DEFAULT_ALGORITHMS: readonly SupportedAlgorithm[] = Object.freeze(['ES256', 'PS256', 'EdDSA', 'Ed25519']);

/** Every algorithm identifier this verifier can be configured with. */
export const SUPPORTED_ALGORITHMS: readonly SupportedAlgorithm[] = Object.freeze(Object.keys(SPECS) as SupportedAlgorithm[]);

/** True when `alg` is one of {@link SUPPORTED_ALGORITHMS} (exact, case-sensitive: RFC 7515 §4.1.1). */
export function isSupportedAlgorithm(alg: unknown): alg is SupportedAlgorithm {
  return typeof alg === 'string' && Object.hasOwn(SPECS, alg);
}

/** The public members of a JWK that identify the key (RFC 7518 §6.2.1, §6.3.1, RFC 8037 §2). */
export interface PublicJwk {
  readonly kty: string;
  readonly crv?: string;
  readonly x?: string;
  readonly y?: string;
  readonly n?: string;
  readonly e?: string;
}

/** True when the JWK's key type (and curve) is the one `alg` requires. */
export function jwkFitsAlgorithm(jwk: { kty?: unknown; crv?: unknown }, alg: SupportedAlgorithm): boolean {
  const spec = SPECS[alg];
  return jwk.kty === spec.kty && (spec.crv === undefined || jwk.crv === spec.crv);
}

/**
 * Copies only the public members of a JWK, so that a private member that slipped into a published
 * JWKS is never imported (and never turns the import into a private key).
 */
export function publicMembers(jwk: { readonly [member: string]: unknown }): PublicJwk | undefined {
  const { kty } = jwk;
  if (kty === 'EC' && areStrings(jwk.crv, jwk.x, jwk.y)) {
    return { kty, crv: jwk.crv as string, x: jwk.x as string, y: jwk.y as string };
  }
  if (kty === 'RSA' && areStrings(jwk.n, jwk.e)) return { kty, n: jwk.n as string, e: jwk.e as string };
  if (kty === 'OKP' && areStrings(jwk.crv, jwk.x)) return { kty, crv: jwk.crv as string, x: jwk.x as string };
  return undefined;
}

function areStrings(...values: unknown[]): boolean {
  return values.every((v) => typeof v === 'string' && v.length > 0);
}

/**
 * Imports a public JWK as a verification key for `alg`; resolves `undefined` when the key is not
 * usable (wrong type or curve, point not on the curve, RSA modulus too short).
 */
export async function importVerificationKey(jwk: PublicJwk, alg: SupportedAlgorithm): Promise<CryptoKey | undefined> {
  if (!jwkFitsAlgorithm(jwk, alg)) return undefined;
  let key: CryptoKey;
  try {
    key = await webcrypto.subtle.importKey('jwk', { ...jwk }, SPECS[alg].importParams, false, ['verify']);
  } catch {
    return undefined;
  }
  if (key.type !== 'public') return undefined;
  if (SPECS[alg].kty === 'RSA' && (key.algorithm as webcrypto.RsaHashedKeyAlgorithm).modulusLength < MIN_RSA_MODULUS_BITS) {
    return undefined;
  }
  return key;
}

/** Verifies a JWS signature; resolves `false` (never rejects) for any malformed signature. */
export async function verifySignature(
  alg: SupportedAlgorithm,
  key: CryptoKey,
  signature: Buffer,
  signingInput: Buffer,
): Promise<boolean> {
  const spec = SPECS[alg];
  // RFC 7518 §3.4: an ECDSA JWS signature is exactly R || S, each the size of the curve order.
  if (spec.signatureLength !== undefined && signature.length !== spec.signatureLength) return false;
  try {
    return await webcrypto.subtle.verify(spec.verifyParams, key, signature, signingInput);
  } catch {
    return false;
  }
}

/**
 * The asymmetric JWS algorithms the verifier can be configured with, and the key type each needs.
 *
 * jose does the cryptography; this table is the allow-list in front of it. Only asymmetric
 * algorithms exist here: `none` (RFC 7518 §3.6) and the HMAC family are absent, so no configuration
 * can enable them, and an HS256 token "keyed" with a public key's bytes (the classic
 * algorithm-confusion attack) is refused before jose sees it.
 *
 * @module
 */

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

interface KeyType {
  readonly kty: 'EC' | 'RSA' | 'OKP';
  readonly crv?: string;
}

/**
 * RFC 7518 §3.4, RFC 8037 §3.1: each algorithm fixes the key type and curve it may be used with.
 * jose's key sets apply the same rule to the issuer's keys; the DPoP proof's embedded `jwk` is
 * checked against it here, before the key is imported.
 */
const KEY_TYPES: Readonly<Record<SupportedAlgorithm, KeyType>> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  // `EdDSA` (RFC 8037) and its fully specified successor `Ed25519` (RFC 9864); Ed448 is not supported.
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  Ed25519: { kty: 'OKP', crv: 'Ed25519' },
};

/**
 * What a verifier accepts when not told otherwise: the algorithms a Tether server signs with and
 * accepts in DPoP proofs — ES256, PS256, and Ed25519 under both its names, `EdDSA` (RFC 8037) and
 * the fully specified `Ed25519` (RFC 9864) that current clients (oauth4webapi, openid-client) send.
 * This package imports nothing from the server, so the list is written out here; a test keeps it
 * equal to the server's (test/grants/jws_algorithms.test.ts).
 */
export const DEFAULT_ALGORITHMS: readonly SupportedAlgorithm[] = Object.freeze(['ES256', 'PS256', 'EdDSA', 'Ed25519']);

/** Every algorithm identifier this verifier can be configured with. */
export const SUPPORTED_ALGORITHMS: readonly SupportedAlgorithm[] = Object.freeze(Object.keys(KEY_TYPES) as SupportedAlgorithm[]);

/** True when `alg` is one of {@link SUPPORTED_ALGORITHMS} (exact, case-sensitive: RFC 7515 §4.1.1). */
export function isSupportedAlgorithm(alg: unknown): alg is SupportedAlgorithm {
  return typeof alg === 'string' && Object.hasOwn(KEY_TYPES, alg);
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
  const type = KEY_TYPES[alg];
  return jwk.kty === type.kty && (type.crv === undefined || jwk.crv === type.crv);
}

/**
 * Copies only the public members of a JWK, so that a private member that slipped into a published
 * JWKS or a DPoP header is never imported (and never turns the import into a private key).
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

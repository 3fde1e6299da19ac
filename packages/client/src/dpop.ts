/**
 * DPoP (RFC 9449): the client's proof-of-possession key and the proofs signed with it, one per request.
 *
 * @module
 */
import { createHash, randomUUID, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** Algorithms a DPoP key may use: asymmetric only (RFC 9449 §4.2 forbids MACs and `none`). */
export type DpopAlgorithm = 'ES256' | 'ES384' | 'PS256' | 'EdDSA' | 'Ed25519';

/** A key pair to sign proofs with: jose/WebCrypto `CryptoKey`s or Node `KeyObject`s. */
export interface DpopKeyPair {
  readonly privateKey: CryptoKey | KeyObject;
  readonly publicKey: CryptoKey | KeyObject;
}

/** A ready DPoP key: the private key, its public JWK for the proof header, and its RFC 7638 thumbprint (`cnf.jkt`). */
export interface DpopKey {
  readonly alg: DpopAlgorithm;
  readonly privateKey: CryptoKey | KeyObject;
  readonly publicJwk: JWK;
  readonly thumbprint: string;
}

/** What one proof is for (RFC 9449 §4.2). */
export interface ProofTarget {
  /** The request's method, as sent. */
  readonly htm: string;
  /** The request's URL; query and fragment are removed here. */
  readonly url: string | URL;
  /** The access token presented with the proof (its hash becomes `ath`, RFC 9449 §4.2). */
  readonly accessToken?: string;
  /** A server-provided nonce (RFC 9449 §8, §9). */
  readonly nonce?: string;
}

/**
 * Prepares the key: `given` if there is one (its private key stays non-extractable as given), else a
 * new one whose private key cannot be exported.
 */
export async function prepareDpopKey(alg: DpopAlgorithm, given?: DpopKeyPair): Promise<DpopKey> {
  const pair = given ?? (await generateKeyPair(alg, { extractable: false, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) }));
  const exported = await exportJWK(pair.publicKey);
  if ('d' in exported) throw new TypeError('the DPoP public key must be a public key');
  const publicJwk: JWK = { kty: exported.kty, ...pickPublicMembers(exported) };
  return { alg, privateKey: pair.privateKey, publicJwk, thumbprint: await calculateJwkThumbprint(publicJwk) };
}

/** Only the public members go into the proof header. */
function pickPublicMembers(jwk: JWK): JWK {
  const { crv, x, y, n, e } = jwk;
  return Object.fromEntries(Object.entries({ crv, x, y, n, e }).filter(([, value]) => value !== undefined)) as JWK;
}

/** RFC 9449 §4.2: `htu` is the target URI without query and fragment. */
export function htuOf(url: string | URL): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/** RFC 9449 §4.2: `ath` is the base64url SHA-256 of the access token's ASCII value. */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/** Signs a fresh proof: a new `jti`, `iat` of now (epoch ms clock), `htm`, `htu` and, with a token, `ath`. */
export function signDpopProof(key: DpopKey, target: ProofTarget, nowMs: number): Promise<string> {
  return new SignJWT({
    htm: target.htm,
    htu: htuOf(target.url),
    ...(target.accessToken === undefined ? {} : { ath: accessTokenHash(target.accessToken) }),
    ...(target.nonce === undefined ? {} : { nonce: target.nonce }),
  })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })
    .setJti(randomUUID())
    .setIssuedAt(Math.floor(nowMs / 1000))
    .sign(key.privateKey);
}

/**
 * Tether's own signing key, read from its database, and JWS signing with it: a deliberately bad
 * token that carries Tether's real signature is wrong only in the property that was changed.
 */
import { createHmac, createPublicKey } from 'node:crypto';
import { CompactSign, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Knex } from 'knex';
import { loadSigningKeys, type SigningKeyOptions } from '../keys/signing_keys.js';

/** The key Tether currently signs access tokens with. */
export interface TetherSigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  /** The public JWK, as Tether publishes it in its JWKS. */
  readonly publicJwk: JWK;
}

/** The current signing key as JWKs: what the dev admin API hands `tether probe --issuer` (docs/admin.md). */
export interface TetherSigningJwks {
  readonly kid: string;
  readonly alg: string;
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
}

/**
 * Loads the current signing key from Tether's database (the same `loadSigningKeys` every instance
 * uses, so encrypted keys need the instance's `encryptionSecret`). The current key is listed first.
 */
export async function loadTetherSigningJwks(knex: Knex, options: SigningKeyOptions): Promise<TetherSigningJwks> {
  const { jwks, publicJwks } = await loadSigningKeys(knex, options);
  const [current] = jwks.keys;
  const [published] = publicJwks.keys;
  if (!current?.kid || !current.alg || !published) throw new Error('Tether has no current signing key');
  return { kid: current.kid, alg: current.alg, privateJwk: current, publicJwk: published };
}

/** The signing key, usable to sign: refuses a private JWK that is not the private half of the published one. */
export async function importTetherSigningKey(jwks: TetherSigningJwks): Promise<TetherSigningKey> {
  const { privateJwk, publicJwk } = jwks;
  if (privateJwk.kid !== jwks.kid || publicJwk.kid !== jwks.kid || privateJwk.x !== publicJwk.x || privateJwk.y !== publicJwk.y || privateJwk.n !== publicJwk.n) {
    throw new Error(`the private and public JWKs of ${jwks.kid} do not match`);
  }
  return { kid: jwks.kid, alg: jwks.alg, privateKey: (await importJWK(privateJwk, jwks.alg)) as CryptoKey, publicJwk };
}

/** {@link loadTetherSigningJwks}, imported for signing. */
export async function loadTetherSigningKey(knex: Knex, options: SigningKeyOptions): Promise<TetherSigningKey> {
  return importTetherSigningKey(await loadTetherSigningJwks(knex, options));
}

/** A compact JWS of `payload` with exactly `header` (its `alg` must fit `key`). */
export async function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header as { alg: string })
    .sign(key);
}

/** RFC 7519 §6: an "unsecured" JWS, `alg: none` and an empty signature. */
export function unsecuredJws(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${base64urlJson({ ...header, alg: 'none' })}.${base64urlJson(payload)}.`;
}

/**
 * The algorithm-confusion token: HS256 keyed with the issuer's *public* key (its SPKI PEM), which a
 * verifier that lets the token choose the algorithm would accept. Signed with node:crypto because
 * jose rightly refuses to use an asymmetric key as an HMAC secret.
 */
export function hmacWithPublicKey(header: Record<string, unknown>, payload: Record<string, unknown>, publicJwk: JWK): string {
  const secret = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const input = `${base64urlJson({ ...header, alg: 'HS256' })}.${base64urlJson(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

function base64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { JwsAlgorithm } from '../config/jws_algorithms.js';
import { sha256Base64url } from '../text/sha256.js';

/** A DPoP key pair (RFC 9449) and its RFC 7638 thumbprint, the `cnf.jkt` of tokens bound to it. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  thumbprint: string;
  /** `EdDSA` and `Ed25519` (RFC 9864) both make an Ed25519 key; the proof's `alg` is the one named. */
  alg: JwsAlgorithm;
}

/** Generates a DPoP key (ES256 unless told otherwise). */
export async function createDpopKey(alg: DpopKey['alg'] = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : undefined);
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, thumbprint: await calculateJwkThumbprint(publicJwk), alg };
}

/** Fields of a proof; anything not given is correct for the request. */
export interface DpopProofClaims {
  htm: string;
  htu: string;
  /** The access token the proof accompanies (its hash becomes `ath`, RFC 9449 §4.2). */
  accessToken?: string;
  nonce?: string;
  jti?: string;
  /** Seconds since the epoch; default now. */
  iat?: number;
  /** Overrides `ath` (e.g. to send a wrong one). */
  ath?: string;
}

/** Signs a DPoP proof JWT (RFC 9449 §4.2) with `key`. */
export async function dpopProof(key: DpopKey, claims: DpopProofClaims): Promise<string> {
  const ath = claims.ath ?? (claims.accessToken ? sha256Base64url(claims.accessToken) : undefined);
  return new SignJWT({
    htm: claims.htm,
    htu: claims.htu,
    ...(ath ? { ath } : {}),
    ...(claims.nonce ? { nonce: claims.nonce } : {}),
  })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })
    .setJti(claims.jti ?? randomUUID())
    .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey);
}

/**
 * JWK thumbprints (RFC 7638), as used by `cnf.jkt` (RFC 9449 §6.1), computed synchronously: by the
 * DPoP proof check (dpop_proof.ts, after it has checked the members) and by callers minting test
 * tokens. A test keeps it equal to jose's `calculateJwkThumbprint`.
 *
 * @module
 */
import type { PublicJwk } from './algorithms.js';
import { sha256Base64url } from './sha256.js';

/**
 * The base64url SHA-256 thumbprint of a public JWK. RFC 7638 §3.2: the required members only, in
 * lexicographic order, without whitespace; object literals below are written in that order and
 * `JSON.stringify` keeps insertion order.
 */
export function jwkThumbprint(jwk: PublicJwk): string {
  switch (jwk.kty) {
    case 'EC':
      return sha256Base64url(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }));
    case 'RSA':
      return sha256Base64url(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }));
    default:
      // RFC 8037 §2: OKP keys hash crv, kty and x.
      return sha256Base64url(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x }));
  }
}

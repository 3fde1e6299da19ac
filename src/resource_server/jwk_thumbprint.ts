/**
 * JWK thumbprints (RFC 7638), as used by `cnf.jkt` (RFC 9449 §6.1).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { PublicJwk } from './algorithms.js';

/**
 * The base64url SHA-256 thumbprint of a public JWK. RFC 7638 §3.2: the required members only, in
 * lexicographic order, without whitespace; object literals below are written in that order and
 * `JSON.stringify` keeps insertion order.
 */
export function jwkThumbprint(jwk: PublicJwk): string {
  let canonical: string;
  switch (jwk.kty) {
    case 'EC':
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
      break;
    case 'RSA':
      canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
      break;
    default:
      // RFC 8037 §2: OKP keys hash crv, kty and x.
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  }
  return createHash('sha256').update(canonical).digest('base64url');
}

import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { hashIdentifier } from '../storage/hash_id.js';

/**
 * Recognising a token Tether itself issued, for every place that is handed one back (introspection,
 * revocation, token exchange, the inventory): a JWT Tether signed (signature against Tether's own
 * published keys — nothing is fetched —, `typ` at+jwt, `iss`; expiry noted, not refused), an opaque
 * token (identified by the hash of its id, as the ledger stores it), or nothing Tether could have issued.
 */
export type PresentedToken =
  | { kind: 'jwt'; tokenId: string; claims: JWTPayload; expired: boolean; expiredReason?: string }
  | { kind: 'opaque'; tokenId: string }
  | { kind: 'unrecognized'; reason: string };

/** Verifies Tether's own access tokens. */
export interface OwnTokenVerifier {
  identify(value: string): Promise<PresentedToken>;
}

/**
 * The ledger's id of an opaque token: the same hash the storage adapter keeps the token under (the id
 * itself is a bearer secret).
 */
export function opaqueTokenId(id: string): string {
  return hashIdentifier(id);
}

/** A compact JWS has three base64url segments; oidc-provider's opaque tokens have no dot. */
function looksLikeJws(value: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(value);
}

/** Claims every Tether access token carries (RFC 9068 §2.2); a JWT without them is not Tether's. */
const REQUIRED_CLAIMS = ['jti', 'exp', 'iat', 'sub', 'client_id', 'aud'];

/**
 * @param publicJwks Tether's published verification keys (keys/signing_keys.ts loadSigningKeys).
 * @param algorithms the JWS algorithms Tether signs with.
 */
export function ownTokenVerifier(options: { issuer: string; publicJwks: JSONWebKeySet; algorithms: string[] }): OwnTokenVerifier {
  const keySet = createLocalJWKSet(options.publicJwks);
  const verifyOptions = { issuer: options.issuer, typ: 'at+jwt', algorithms: options.algorithms, requiredClaims: REQUIRED_CLAIMS };

  return {
    async identify(value) {
      if (!looksLikeJws(value)) return { kind: 'opaque', tokenId: opaqueTokenId(value) };
      try {
        const { payload } = await jwtVerify(value, keySet, verifyOptions);
        return { kind: 'jwt', tokenId: payload.jti!, claims: payload, expired: false };
      } catch (error) {
        // jose checks the signature before the claims: an expired token is still known to be ours.
        if (error instanceof joseErrors.JWTExpired && typeof error.payload.jti === 'string') {
          return { kind: 'jwt', tokenId: error.payload.jti, claims: error.payload, expired: true, expiredReason: error.message };
        }
        return { kind: 'unrecognized', reason: `JWT not accepted: ${(error as Error).message}` };
      }
    },
  };
}

import { errors as joseErrors, importJWK, jwtVerify, type CryptoKey, type JWK, type JWTHeaderParameters, type JWTPayload } from 'jose';
import { hashIdentifier } from '../storage/hash_id.js';

/**
 * Recognising a token Tether itself issued, for every place that is handed one back (introspection,
 * revocation, token exchange, the inventory): a JWT Tether signed (signature by one of the keys
 * Tether publishes, as stored in its database — nothing is fetched —, `typ` at+jwt, `iss`; expiry
 * noted, not refused), an opaque token (identified by the hash of its id, as the ledger stores it),
 * or nothing Tether could have issued.
 *
 * Any instance verifies a token signed by any other: a `kid` this instance does not know yet is
 * looked up in the database (live_signing_keys.ts, bounded per kid and overall). A database that
 * cannot answer that lookup is an error, never "not ours": a valid token must not be answered
 * `active: false`, refused for exchange, or "revoked" without being revoked because of an outage.
 */
export type PresentedToken =
  | { kind: 'jwt'; tokenId: string; claims: JWTPayload; expired: boolean; expiredReason?: string }
  | { kind: 'opaque'; tokenId: string }
  | { kind: 'unrecognized'; reason: string };

/** Verifies Tether's own access tokens. */
export interface OwnTokenVerifier {
  /** Rejects only when the keys cannot be read (the database is unavailable). */
  identify(value: string): Promise<PresentedToken>;
}

/** Where verification keys come from: Tether's published keys (keys/live_signing_keys.ts). */
export interface VerificationKeys {
  /** The published public JWK named `kid`, or undefined when the database has none; rejects when it cannot tell. */
  verificationKey(kid: string): Promise<JWK | undefined>;
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
 * Tether's kids are RFC 7638 thumbprints (43 characters for SHA-256); a longer one is not Tether's
 * and is never looked up (nor remembered as looked up).
 */
const MAX_KID_LENGTH = 128;

/** The token names no key Tether publishes (or one of another algorithm): it is not Tether's. */
class NotOwnKey extends Error {}

/** The published keys could not be read: whether the token is Tether's is unknown. */
export class KeyLookupFailed extends Error {
  override name = 'KeyLookupFailed';
}

/**
 * @param keys Tether's published verification keys, looked up by `kid`.
 * @param algorithms the JWS algorithms Tether signs with.
 */
export function ownTokenVerifier(options: { issuer: string; keys: VerificationKeys; algorithms: string[] }): OwnTokenVerifier {
  const verifyOptions = { issuer: options.issuer, typ: 'at+jwt', algorithms: options.algorithms, requiredClaims: REQUIRED_CLAIMS };
  // Only keys that were published are ever imported, so this stays as small as the key history.
  const imported = new Map<string, Promise<CryptoKey | Uint8Array>>();

  /** RFC 7515 §4.1.4: Tether's tokens always name their key; the key's own `alg` must be the header's. */
  async function keyFor(header: JWTHeaderParameters): Promise<CryptoKey | Uint8Array> {
    if (typeof header.kid !== 'string') throw new NotOwnKey('JWT names no kid');
    if (header.kid.length > MAX_KID_LENGTH) throw new NotOwnKey(`kid of ${header.kid.length} characters is not a Tether key id`);
    const jwk = await options.keys.verificationKey(header.kid).catch((cause: unknown) => {
      throw new KeyLookupFailed(`the signing keys could not be read: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    });
    if (!jwk) throw new NotOwnKey(`kid ${JSON.stringify(header.kid.slice(0, 100))} is not a published Tether key`);
    if (jwk.alg !== header.alg) throw new NotOwnKey(`kid ${header.kid} is a ${jwk.alg} key, the JWT says ${header.alg}`);
    const cacheKey = `${header.kid} ${jwk.x ?? ''}${jwk.n ?? ''}`;
    let key = imported.get(cacheKey);
    if (!key) {
      key = importJWK(jwk, jwk.alg);
      imported.set(cacheKey, key);
    }
    return key;
  }

  return {
    async identify(value) {
      if (!looksLikeJws(value)) return { kind: 'opaque', tokenId: opaqueTokenId(value) };
      try {
        const { payload } = await jwtVerify(value, keyFor, verifyOptions);
        return { kind: 'jwt', tokenId: payload.jti!, claims: payload, expired: false };
      } catch (error) {
        // jose checks the signature before the claims: an expired token is still known to be ours.
        if (error instanceof joseErrors.JWTExpired && typeof error.payload.jti === 'string') {
          return { kind: 'jwt', tokenId: error.payload.jti, claims: error.payload, expired: true, expiredReason: error.message };
        }
        if (error instanceof KeyLookupFailed) throw error;
        return { kind: 'unrecognized', reason: `JWT not accepted: ${(error as Error).message}` };
      }
    },
  };
}

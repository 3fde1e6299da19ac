import { importJWK, type JWK, type JWTPayload } from 'jose';
import { createSignatureMemo, typIs, verificationKeyOf, verifySignedJws, type SupportedAlgorithm, type VerificationKey } from 'tether-oauth-resource-server';
import { hashIdentifier } from '../storage/hash_id.js';

/**
 * Recognising a token Tether itself issued, for every place that is handed one back (introspection,
 * revocation, token exchange, the inventory): a JWT Tether signed (signature by one of the keys
 * Tether publishes, as stored in its database — nothing is fetched —, `typ` at+jwt, `iss`; expiry
 * noted, not refused), an opaque token (identified by the hash of its id, as the ledger stores it),
 * or nothing Tether could have issued.
 *
 * The JWS and its signature are checked as the verifier package checks an access token
 * (`verifySignedJws`: node:crypto's synchronous verify, docs/benchmarks.md); the claims here. A
 * token handed back again (the same subject token exchanged on each request it came with, the same
 * token introspected) skips the signature check, as the verifier's does: the memo of signatures
 * that verified, each with its key (signature_memo.ts in the verifier package).
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
const REQUIRED_CLAIMS = ['jti', 'exp', 'iat', 'sub', 'client_id', 'aud'] as const;

/** Larger than any token Tether signs (a deep `act` chain included), checked before decoding. */
const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * Tether's kids are RFC 7638 thumbprints (43 characters for SHA-256); a longer one is not Tether's
 * and is never looked up (nor remembered as looked up).
 */
const MAX_KID_LENGTH = 128;

/** Tokens whose signature is remembered: at most this × MAX_TOKEN_BYTES of memory (16 MiB). */
const REMEMBERED_SIGNATURES = 1000;

/** The token names no key Tether publishes (or one of another algorithm): it is not Tether's. */
class NotOwnKey extends Error {}

/** The published keys could not be read: whether the token is Tether's is unknown. */
export class KeyLookupFailed extends Error {
  override name = 'KeyLookupFailed';
}

/** Why a JWT Tether might have signed is not accepted: the reason kept in the ledger and the log. */
class NotAccepted extends Error {}

/**
 * @param keys Tether's published verification keys, looked up by `kid`.
 * @param algorithms the JWS algorithms Tether signs with.
 */
export function ownTokenVerifier(options: { issuer: string; keys: VerificationKeys; algorithms: string[] }): OwnTokenVerifier {
  // Keys are imported once per kid and key (below), so a remembered signature names the same key object
  // for as long as the key is published; a kid no longer published is refused before the memo is asked.
  const rules = { maxBytes: MAX_TOKEN_BYTES, algorithms: new Set(options.algorithms), memo: createSignatureMemo(REMEMBERED_SIGNATURES) };
  // Only keys that were published are ever imported, so this stays as small as the key history.
  const imported = new Map<string, Promise<VerificationKey | undefined>>();

  /** RFC 7515 §4.1.4: Tether's tokens always name their key; the key's own `alg` must be the header's. */
  async function keyFor(alg: SupportedAlgorithm, kid: string | undefined): Promise<VerificationKey> {
    if (kid === undefined) throw new NotOwnKey('JWT names no kid');
    if (kid.length > MAX_KID_LENGTH) throw new NotOwnKey(`kid of ${kid.length} characters is not a Tether key id`);
    const jwk = await options.keys.verificationKey(kid).catch((cause: unknown) => {
      throw new KeyLookupFailed(`the signing keys could not be read: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    });
    if (!jwk) throw new NotOwnKey(`kid ${JSON.stringify(kid.slice(0, 100))} is not a published Tether key`);
    if (jwk.alg !== alg) throw new NotOwnKey(`kid ${kid} is a ${jwk.alg} key, the JWT says ${alg}`);
    const cacheKey = `${kid} ${jwk.x ?? ''}${jwk.n ?? ''}`;
    let key = imported.get(cacheKey);
    if (!key) {
      key = importJWK(jwk, alg, { extractable: true }).then((cryptoKey) => (cryptoKey instanceof Uint8Array ? undefined : verificationKeyOf(alg, cryptoKey)));
      imported.set(cacheKey, key);
    }
    const usable = await key;
    if (usable === undefined) throw new NotOwnKey(`kid ${kid} is not a usable ${alg} public key`);
    return usable;
  }

  return {
    async identify(value) {
      if (!looksLikeJws(value)) return { kind: 'opaque', tokenId: opaqueTokenId(value) };
      try {
        const { header, payload } = await verifySignedJws(value, rules, keyFor);
        const now = Math.floor(Date.now() / 1000);
        const claims = checkOwnClaims(header, payload as JWTPayload, options.issuer, now);
        // The signature is checked before the claims: an expired token is still known to be ours.
        return (claims.exp as number) <= now
          ? { kind: 'jwt', tokenId: claims.jti as string, claims, expired: true, expiredReason: '"exp" claim timestamp check failed' }
          : { kind: 'jwt', tokenId: claims.jti as string, claims, expired: false };
      } catch (error) {
        if (error instanceof KeyLookupFailed) throw error;
        return { kind: 'unrecognized', reason: `JWT not accepted: ${reasonOf(error)}` };
      }
    },
  };
}

/**
 * The claims of a Tether access token (RFC 9068 §2.2, §4): `typ` at+jwt, `iss` this issuer, every
 * required claim present, `iat` and `exp` numbers, `nbf` (when present) not in the future. `exp` is
 * the caller's to judge. `now` is in seconds.
 */
function checkOwnClaims(header: { readonly [member: string]: unknown }, claims: JWTPayload, issuer: string, now: number): JWTPayload {
  if (!typIs(header.typ, 'at+jwt')) throw new NotAccepted('unexpected "typ" JWT header value');
  for (const claim of REQUIRED_CLAIMS) {
    if (!(claim in claims)) throw new NotAccepted(`missing required "${claim}" claim`);
  }
  if (claims.iss !== issuer) throw new NotAccepted('unexpected "iss" claim value');
  if (typeof claims.jti !== 'string') throw new NotAccepted('"jti" claim must be a string');
  if (typeof claims.iat !== 'number') throw new NotAccepted('"iat" claim must be a number');
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > now)) throw new NotAccepted('"nbf" claim timestamp check failed');
  if (typeof claims.exp !== 'number') throw new NotAccepted('"exp" claim must be a number');
  return claims;
}

/** The private reason of a refusal; the verifier package's signature failure in jose's words, as before. */
function reasonOf(error: unknown): string {
  if ((error as { code?: unknown })?.code === 'ERR_TOKEN_SIGNATURE') return 'signature verification failed';
  return (error as Error)?.message ?? String(error);
}

/**
 * Verification of a DPoP proof presented with a DPoP-bound access token (RFC 9449 §4.3 and §7).
 * jose imports the key (once per key: {@link createDpopKeyCache}); node:crypto verifies the signature
 * (jws_signature.ts); the checks of §4.3 around them, in its order, are here. The signature part
 * ({@link verifyDpopProofSignature}) is exported for the Tether server's token endpoint, which
 * checks the claims of a proof that binds a new token by its own rules.
 *
 * @module
 */
import { importJWK } from 'jose';
import { isSupportedAlgorithm, jwkFitsAlgorithm, publicMembers, type PublicJwk, type SupportedAlgorithm } from './algorithms.js';
import { isCanonicalBase64url } from './base64url.js';
import { parseCompactJws, decodeJsonObject, typIs, type CompactJws, type JsonObject, type JwsErrorCodes } from './compact_jws.js';
import type { DpopNonceSource } from './dpop_nonce.js';
import { VerifierError } from './errors.js';
import { isValidSignature, verificationKeyOf, type VerificationKey } from './jws_signature.js';
import { jwkThumbprint } from './jwk_thumbprint.js';
import type { ReplayStore } from './replay_store.js';
import { normalizeHttpUri } from './request_uri.js';
import { sha256Base64url } from './sha256.js';


/** What checking a proof's signature needs from the configuration (RFC 9449 §4.3 checks 2–7). */
export interface DpopProofSignatureRules {
  readonly algorithms: ReadonlySet<string>;
  readonly maxProofBytes: number;
  readonly keyCache: DpopKeyCache;
}

/** What proof verification needs from the configuration. */
export interface DpopRules extends DpopProofSignatureRules {
  readonly maxAgeSeconds: number;
  readonly clockToleranceSeconds: number;
  readonly replayStore: ReplayStore;
  readonly nonce: DpopNonceSource | undefined;
}

/** A DPoP proof whose signature is its embedded key's. */
export interface SignedDpopProof {
  readonly header: JsonObject;
  readonly claims: JsonObject;
  /** The RFC 7638 thumbprint of the proof's key (RFC 9449 §6.1 `cnf.jkt`). */
  readonly thumbprint: string;
}

/** The request a proof must match. */
export interface DpopRequest {
  readonly method: string;
  /** The absolute request URL (query and fragment are ignored). */
  readonly url: string;
  /** The `DPoP` request header value(s). */
  readonly proof: string | readonly string[] | undefined;
  /** The access token presented with the proof. */
  readonly accessToken: string;
  /** The token's `cnf.jkt`. */
  readonly jkt: string;
}

const PROOF_CODES: JwsErrorCodes = {
  tooLarge: 'ERR_DPOP_PROOF_MALFORMED',
  malformed: 'ERR_DPOP_PROOF_MALFORMED',
  encrypted: 'ERR_DPOP_PROOF_MALFORMED',
};

/** JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4, RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Longest `jti` recorded; longer ones are refused so that replay records stay small. */
const MAX_JTI_LENGTH = 256;

/**
 * Checks the proof against the request and the bound token, and records its `jti`; rejects with a
 * {@link VerifierError} (`invalid_dpop_proof`, `invalid_token` for a key other than the bound one,
 * or `use_dpop_nonce`). `now` is in seconds.
 */
export async function verifyDpopProof(request: DpopRequest, rules: DpopRules, now: number): Promise<void> {
  const proof = singleProof(request.proof);
  // RFC 9449 §7.1: the proof must be signed by the key the token is bound to.
  const { claims, thumbprint } = await verifyDpopProofSignature(proof, rules, request.jkt);
  const { jti, iat } = checkProofClaims(claims, request, rules, now);
  await checkNonce(claims.nonce, rules.nonce);
  // RFC 9449 §11.1: a proof is accepted once. Recorded last, so that only proofs that passed every
  // other check occupy the store. The key is scoped to the DPoP key: jti values are chosen by
  // clients and need only be unique per key.
  const expiresAt = (iat + rules.maxAgeSeconds + 2 * rules.clockToleranceSeconds) * 1000;
  if (await recordProof(rules.replayStore, `${thumbprint}:${jti}`, expiresAt)) {
    throw new VerifierError('ERR_DPOP_PROOF_REPLAYED', 'DPoP proof was already used');
  }
}

/**
 * RFC 9449 §4.3 checks 2–7 of one proof: a JWS of `typ` dpop+jwt, an allowed algorithm, no `crit`, a
 * public `jwk` of the key type the algorithm needs, and the signature by that key; the claims are
 * parsed only once they are authentic. With `expectedThumbprint`, a proof by another key is refused
 * before its key is imported (ERR_DPOP_KEY_MISMATCH). Rejects with a {@link VerifierError}.
 */
export async function verifyDpopProofSignature(proof: string, rules: DpopProofSignatureRules, expectedThumbprint?: string): Promise<SignedDpopProof> {
  const jws = parseCompactJws(proof, rules.maxProofBytes, PROOF_CODES, 'DPoP proof');
  const { header } = jws;
  // RFC 9449 §4.3 checks 4–7: type, algorithm, key.
  if (!typIs(header.typ, 'dpop+jwt')) throw new VerifierError('ERR_DPOP_PROOF_TYPE', 'DPoP proof typ must be dpop+jwt');
  const alg = header.alg;
  if (!isSupportedAlgorithm(alg) || !rules.algorithms.has(alg)) {
    throw new VerifierError('ERR_DPOP_PROOF_ALGORITHM', 'DPoP proof algorithm is not allowed');
  }
  if (header.crit !== undefined) throw new VerifierError('ERR_DPOP_PROOF_MALFORMED', 'DPoP proof has critical header parameters');
  const jwk = proofPublicKey(header.jwk, alg);
  // The members are the required ones, strings of base64url (proofPublicKey): the thumbprint is
  // jose's calculateJwkThumbprint, computed without its asynchronous digest (jwk_thumbprint.ts).
  const thumbprint = jwkThumbprint(jwk);
  if (expectedThumbprint !== undefined && thumbprint !== expectedThumbprint) {
    throw new VerifierError('ERR_DPOP_KEY_MISMATCH', 'DPoP proof key is not the key the token is bound to');
  }
  const key = await rules.keyCache.get(jwk, alg, thumbprint);
  if (key === undefined) throw new VerifierError('ERR_DPOP_PROOF_JWK', 'DPoP proof jwk is not a usable public key');
  return { header, claims: verifiedClaims(jws, key, alg), thumbprint };
}

/**
 * The signature check (RFC 9449 §4.3 check 6, node:crypto as for the access token:
 * jws_signature.ts); the payload is parsed only once it is authentic.
 */
function verifiedClaims(jws: CompactJws, key: VerificationKey, alg: SupportedAlgorithm): JsonObject {
  if (!isValidSignature(alg, key, jws.signingInput, jws.signature)) throw new VerifierError('ERR_DPOP_PROOF_SIGNATURE', 'DPoP proof signature is invalid');
  const claims = decodeJsonObject(jws.payload);
  if (claims === undefined) throw new VerifierError('ERR_DPOP_PROOF_MALFORMED', 'DPoP proof payload is not a JSON object');
  return claims;
}

/** A replay store that cannot answer means the request cannot be checked: 503, never access. */
async function recordProof(store: ReplayStore, key: string, expiresAt: number): Promise<boolean> {
  try {
    return await store.seen(key, expiresAt);
  } catch (cause) {
    throw new VerifierError('ERR_DPOP_STATE_UNAVAILABLE', 'DPoP replay detection is unavailable', { cause });
  }
}

/** RFC 9449 §4.3 check 1: exactly one DPoP header field. */
function singleProof(proof: string | readonly string[] | undefined): string {
  let value = proof;
  if (Array.isArray(value)) {
    if (value.length > 1) throw new VerifierError('ERR_DPOP_PROOF_MULTIPLE', 'more than one DPoP proof');
    value = value[0];
  }
  if (typeof value !== 'string' || value.length === 0) throw new VerifierError('ERR_DPOP_PROOF_MISSING', 'DPoP proof is missing');
  // Several header fields joined by a proxy arrive comma-separated; a JWS never contains a comma.
  if (value.includes(',')) throw new VerifierError('ERR_DPOP_PROOF_MULTIPLE', 'more than one DPoP proof');
  return value;
}

/** RFC 9449 §4.3 check 7: `jwk` is a public key of the type the algorithm needs. */
function proofPublicKey(value: unknown, alg: SupportedAlgorithm): PublicJwk {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new VerifierError('ERR_DPOP_PROOF_JWK', 'DPoP proof has no jwk header');
  }
  const jwk = value as JsonObject;
  if (PRIVATE_MEMBERS.some((member) => jwk[member] !== undefined)) {
    throw new VerifierError('ERR_DPOP_PROOF_JWK', 'DPoP proof jwk contains private key material');
  }
  const publicJwk = publicMembers(jwk);
  if (publicJwk === undefined || !jwkFitsAlgorithm(publicJwk, alg)) {
    throw new VerifierError('ERR_DPOP_PROOF_JWK', 'DPoP proof jwk does not fit its algorithm');
  }
  // RFC 7518 §6.2.1, §6.3.1, RFC 8037 §2: the key's values are base64url. Anything else is refused
  // here, before jose (whose thumbprint throws a TypeError on a non-ASCII member) sees it.
  if (![publicJwk.x, publicJwk.y, publicJwk.n, publicJwk.e].every((value) => value === undefined || isCanonicalBase64url(value))) {
    throw new VerifierError('ERR_DPOP_PROOF_JWK', 'DPoP proof jwk members are not base64url');
  }
  return publicJwk;
}

/** RFC 9449 §4.2 claims and §4.3 checks 8–12. */
function checkProofClaims(claims: JsonObject, request: DpopRequest, rules: DpopRules, now: number): { jti: string; iat: number } {
  const { jti, htm, htu, iat, ath } = claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) {
    throw new VerifierError('ERR_DPOP_PROOF_MALFORMED', 'DPoP proof jti is missing or invalid');
  }
  // HTTP methods are case-sensitive (RFC 9110 §9.1), so the comparison is exact.
  if (typeof htm !== 'string' || htm !== request.method) throw new VerifierError('ERR_DPOP_PROOF_HTM', 'DPoP proof htm does not match the request method');
  const expectedUri = normalizeHttpUri(request.url);
  if (typeof htu !== 'string' || expectedUri === undefined || normalizeHttpUri(htu) !== expectedUri) {
    throw new VerifierError('ERR_DPOP_PROOF_HTU', 'DPoP proof htu does not match the request URL');
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new VerifierError('ERR_DPOP_PROOF_IAT', 'DPoP proof has no valid iat');
  // RFC 9449 §11.1: only proofs created within a short window, with leeway for clock skew.
  if (iat > now + rules.clockToleranceSeconds || iat < now - rules.maxAgeSeconds - rules.clockToleranceSeconds) {
    throw new VerifierError('ERR_DPOP_PROOF_IAT', 'DPoP proof iat is outside the acceptance window');
  }
  // RFC 9449 §4.3 check 12 / §7: `ath` binds the proof to this very token.
  if (typeof ath !== 'string' || ath !== accessTokenHash(request.accessToken)) {
    throw new VerifierError('ERR_DPOP_PROOF_ATH', 'DPoP proof ath does not match the access token');
  }
  return { jti, iat };
}

/** RFC 9449 §4.2: `ath` is the base64url SHA-256 of the ASCII access token. */
export function accessTokenHash(accessToken: string): string {
  return sha256Base64url(Buffer.from(accessToken, 'latin1'));
}

/** RFC 9449 §9: when the server requires nonces, a missing or stale one gets `use_dpop_nonce`. */
async function checkNonce(nonce: unknown, source: DpopNonceSource | undefined): Promise<void> {
  if (source === undefined) return;
  let fresh: string;
  try {
    if (typeof nonce === 'string' && nonce.length > 0 && (await source.isValid(nonce))) return;
    fresh = await source.current();
  } catch (cause) {
    throw new VerifierError('ERR_DPOP_STATE_UNAVAILABLE', 'DPoP nonces are unavailable', { cause });
  }
  throw new VerifierError('ERR_DPOP_NONCE', 'DPoP proof must carry the server nonce', { dpopNonce: fresh });
}

/** Imported DPoP public keys, so that a client reusing its key costs one import, not one per request. */
export interface DpopKeyCache {
  get(jwk: PublicJwk, alg: SupportedAlgorithm, thumbprint: string): Promise<VerificationKey | undefined>;
}

/**
 * A bounded cache of DPoP keys imported by jose, keyed by RFC 7638 thumbprint and algorithm: equal
 * thumbprints mean equal key members, so the cached key is the key in the proof.
 */
export function createDpopKeyCache(maxEntries = 1000): DpopKeyCache {
  const keys = new Map<string, Promise<VerificationKey | undefined>>();
  return {
    get(jwk, alg, thumbprint) {
      const cacheKey = `${alg}:${thumbprint}`;
      let key = keys.get(cacheKey);
      if (key === undefined) {
        key = importPublicKey(jwk, alg);
        keys.set(cacheKey, key);
        if (keys.size > maxEntries) keys.delete(keys.keys().next().value as string);
      }
      return key;
    },
  };
}

/**
 * jose's import of a public JWK; `undefined` when it is not a usable key (a point off the curve, an
 * RSA key under 2048 bits: RFC 7518 §3.3, §3.5).
 */
async function importPublicKey(jwk: PublicJwk, alg: SupportedAlgorithm): Promise<VerificationKey | undefined> {
  try {
    const key = await importJWK({ ...jwk }, alg, { extractable: true });
    return key instanceof Uint8Array ? undefined : verificationKeyOf(alg, key);
  } catch {
    return undefined;
  }
}

/**
 * The issuer's signing keys: a local JWKS, or a remote one fetched and cached; jose selects and
 * imports the key for each token.
 *
 * Keys come only from here. Header parameters that point at keys (`jku`, `x5u`, `jwk`, `x5c`,
 * RFC 7515 §4.1.2–§4.1.6) are never read: a token cannot choose the key that verifies it.
 *
 * The cache policy is this module's, not jose's `createRemoteJWKSet`: a remote set is fetched on
 * first use through the verifier's bounded HTTP client (timeout, size cap, no redirects, the
 * injected `fetch` and clock), kept for `maxAgeMs`, still used when a refresh fails (a stale set is
 * better than none while the issuer is briefly unreachable), and refetched early only when a token
 * names a `kid` the cached set lacks (the issuer rotated its keys), at most once per `cooldownMs`,
 * so that tokens with made-up `kid`s cannot turn the verifier into a load generator against the
 * issuer. Each fetched set becomes one `jose.createLocalJWKSet`, which applies RFC 7517's `use`,
 * `key_ops`, `alg` and curve rules and imports the key; resolved keys are cached with the set in
 * node:crypto's form (jws_signature.ts), so the hot path does no key selection or import.
 *
 * @module
 */
import { createLocalJWKSet, errors, type CryptoKey, type JSONWebKeySet, type JWK } from 'jose';
import { publicMembers, type SupportedAlgorithm } from './algorithms.js';
import { VerifierError } from './errors.js';
import { fetchJson, type FetchJsonOptions } from './fetch_json.js';
import { verificationKeyOf, type VerificationKey } from './jws_signature.js';
import { singleFlight } from './single_flight.js';

/** A JSON Web Key Set (RFC 7517 §5) as configured or published. */
export interface JsonWebKeySet {
  readonly keys: readonly { readonly [member: string]: unknown }[];
}

/** Resolves the verification key for a token header. */
export interface KeyResolver {
  /**
   * Resolves the key for `alg` and `kid`, or rejects with a {@link VerifierError}; the same object
   * for as long as the set it came from is used (the memo of verified signatures relies on it).
   * A plain function: it may be passed on detached.
   */
  readonly getKey: (alg: SupportedAlgorithm, kid: string | undefined) => Promise<VerificationKey>;
}

/** Options of {@link createJwksCache}: exactly one of `jwks` and `jwksUri`. */
export interface JwksCacheOptions {
  readonly jwks?: JsonWebKeySet;
  /** The JWKS URL, or a function resolving it (discovery). */
  readonly jwksUri?: () => Promise<string>;
  readonly http: FetchJsonOptions;
  readonly cooldownMs: number;
  readonly maxAgeMs: number;
  readonly now: () => number;
}

interface Snapshot {
  /** jose's key selection and import over the set's public keys. */
  readonly select: ReturnType<typeof createLocalJWKSet>;
  readonly fetchedAt: number;
  /** `alg + ' ' + kid` → key, filled as tokens are verified; only keys that exist are cached. */
  readonly resolved: Map<string, VerificationKey>;
}

/** Creates the key resolver for a local or remote JWKS. */
export function createJwksCache(options: JwksCacheOptions): KeyResolver {
  const local = options.jwks === undefined ? undefined : toSnapshot(options.jwks, options.now());
  let snapshot = local;
  let lastAttemptAt = -Infinity;
  let lastError: unknown;
  const fetching = singleFlight(() => {
    lastAttemptAt = options.now();
    return fetchSnapshot(options).then(
      (fresh) => (snapshot = fresh),
      (err: unknown) => {
        lastError = err;
        throw err;
      },
    );
  });
  const refresh = fetching.run;

  function mayFetch(): boolean {
    return options.now() - lastAttemptAt >= (snapshot === undefined ? Math.min(options.cooldownMs, 5000) : options.cooldownMs);
  }

  async function current(): Promise<Snapshot> {
    if (local !== undefined) return local;
    if (snapshot === undefined) {
      if (!fetching.running() && !mayFetch()) throw unavailable(lastError);
      try {
        return await refresh();
      } catch (err) {
        throw unavailable(err);
      }
    }
    if (options.now() - snapshot.fetchedAt > options.maxAgeMs && mayFetch()) {
      // A stale set is still better than none when the issuer is briefly unreachable.
      return refresh().catch(() => snapshot as Snapshot);
    }
    return snapshot;
  }

  async function refetchForUnknownKid(): Promise<Snapshot | undefined> {
    if (local !== undefined || (!fetching.running() && !mayFetch())) return undefined;
    try {
      return await refresh();
    } catch (err) {
      throw unavailable(err);
    }
  }

  return {
    async getKey(alg, kid) {
      let set = await current();
      const cacheKey = kid === undefined ? alg : `${alg} ${kid}`;
      const hit = set.resolved.get(cacheKey);
      if (hit !== undefined) return hit;
      let found = await selectKey(set, alg, kid);
      if (found === undefined) {
        const fresh = await refetchForUnknownKid();
        if (fresh !== undefined) {
          set = fresh;
          found = await selectKey(set, alg, kid);
        }
      }
      if (found === undefined) throw new VerifierError('ERR_JWKS_NO_MATCHING_KEY', 'no key of the issuer matches the token');
      // Concurrent first lookups each import the key: the first one kept is the one every caller
      // gets, so that a set has one key object per alg and kid (signature_memo.ts compares them).
      const kept = set.resolved.get(cacheKey);
      if (kept !== undefined) return kept;
      // Only keys that exist and imported are cached: the next fetch may bring a good one.
      set.resolved.set(cacheKey, found);
      return found;
    },
  };
}

/**
 * jose's choice and import of the key for `alg` and `kid` (RFC 7517 §4.2–§4.5, RFC 7515 §4.1.4);
 * `undefined` when the set has none (a refetch may help).
 */
async function selectKey(set: Snapshot, alg: SupportedAlgorithm, kid: string | undefined): Promise<VerificationKey | undefined> {
  let key: CryptoKey;
  try {
    key = await set.select({ alg, kid });
  } catch (err) {
    if (err instanceof errors.JWKSNoMatchingKey) return undefined;
    if (err instanceof errors.JWKSMultipleMatchingKeys) {
      throw new VerifierError('ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'several keys of the issuer match the token; it must name one by kid');
    }
    // A point off the curve, a truncated modulus: the key exists but cannot verify anything.
    throw new VerifierError('ERR_JWKS_NO_MATCHING_KEY', 'the key of the issuer that matches the token is not usable', { cause: err });
  }
  // A key of the wrong kind, or an RSA key under 2048 bits, is not usable (jws_signature.ts).
  const usable = verificationKeyOf(alg, key);
  if (usable === undefined) throw new VerifierError('ERR_JWKS_NO_MATCHING_KEY', 'the key of the issuer that matches the token is not usable');
  return usable;
}

function unavailable(cause: unknown): VerifierError {
  if (cause instanceof VerifierError && cause.code === 'ERR_DISCOVERY_FAILED') return cause;
  return new VerifierError('ERR_JWKS_UNAVAILABLE', 'the issuer keys are unavailable', { cause });
}

async function fetchSnapshot(options: JwksCacheOptions): Promise<Snapshot> {
  const uri = await (options.jwksUri as () => Promise<string>)();
  const json = await fetchJson(uri, { method: 'GET' }, options.http);
  if (!Array.isArray(json.keys)) throw new Error(`${uri} is not a JWK Set`);
  return toSnapshot(json as unknown as JsonWebKeySet, options.now());
}

function toSnapshot(jwks: JsonWebKeySet, fetchedAt: number): Snapshot {
  const keys: JWK[] = [];
  for (const source of jwks.keys) {
    if (typeof source !== 'object' || source === null) continue;
    const jwk = publicMembers(source);
    // Keys of types we do not verify with, or missing members, are skipped, not fatal (RFC 7517 §5).
    if (jwk === undefined) continue;
    keys.push({ ...jwk, ...selectionMembers(source) });
  }
  return { select: createLocalJWKSet({ keys } as JSONWebKeySet), fetchedAt, resolved: new Map() };
}

/**
 * The members jose selects keys by, copied only when well-typed. A malformed one is kept as an
 * impossible value rather than dropped, so that a key restricted badly is never used unrestricted.
 */
function selectionMembers(source: { readonly [member: string]: unknown }): Partial<JWK> {
  const members: Partial<JWK> = {};
  if (typeof source.kid === 'string') members.kid = source.kid;
  if (source.use !== undefined) members.use = typeof source.use === 'string' ? source.use : 'invalid';
  if (source.alg !== undefined) members.alg = typeof source.alg === 'string' ? source.alg : 'invalid';
  if (source.key_ops !== undefined) {
    const ops = source.key_ops;
    members.key_ops = Array.isArray(ops) && ops.every((op) => typeof op === 'string') ? [...new Set(ops as string[])] : ['invalid'];
  }
  return members;
}

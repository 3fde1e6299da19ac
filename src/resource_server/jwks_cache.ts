/**
 * The issuer's signing keys: a local JWKS, or a remote one fetched and cached.
 *
 * Keys come only from here. Header parameters that point at keys (`jku`, `x5u`, `jwk`, `x5c`,
 * RFC 7515 §4.1.2–§4.1.6) are never read: a token cannot choose the key that verifies it.
 *
 * A remote set is fetched on first use, kept for `maxAgeMs`, and refetched early only when a token
 * names a `kid` the cached set lacks (the issuer rotated its keys), at most once per `cooldownMs`,
 * so that tokens with made-up `kid`s cannot turn the verifier into a load generator against the
 * issuer. Imported `CryptoKey`s are cached with the set, so the hot path does no key import.
 *
 * @module
 */
import type { webcrypto } from 'node:crypto';
import { importVerificationKey, jwkFitsAlgorithm, publicMembers, type PublicJwk, type SupportedAlgorithm } from './algorithms.js';
import type { JsonObject } from './compact_jws.js';
import { VerifierError } from './errors.js';
import { fetchJson, type FetchJsonOptions } from './fetch_json.js';
import { singleFlight } from './single_flight.js';

type CryptoKey = webcrypto.CryptoKey;

/** A JSON Web Key Set (RFC 7517 §5) as configured or published. */
export interface JsonWebKeySet {
  readonly keys: readonly { readonly [member: string]: unknown }[];
}

/** Resolves the verification key for a token header. */
export interface KeyResolver {
  /** Resolves the key for `alg` and `kid`, or rejects with a {@link VerifierError}. */
  getKey(alg: SupportedAlgorithm, kid: string | undefined): Promise<CryptoKey>;
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

interface CachedKey {
  readonly kid: string | undefined;
  readonly source: { readonly [member: string]: unknown };
  readonly jwk: PublicJwk;
  readonly imported: Map<SupportedAlgorithm, Promise<CryptoKey | undefined>>;
}

interface Snapshot {
  readonly keys: readonly CachedKey[];
  readonly fetchedAt: number;
  /** `alg + ' ' + kid` → key, filled as tokens are verified; only keys that exist are cached. */
  readonly resolved: Map<string, Promise<CryptoKey>>;
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
      let candidates = selectKeys(set, alg, kid);
      if (candidates.length === 0) {
        const fresh = await refetchForUnknownKid();
        if (fresh !== undefined) {
          set = fresh;
          candidates = selectKeys(set, alg, kid);
        }
      }
      if (candidates.length === 0) throw new VerifierError('ERR_JWKS_NO_MATCHING_KEY', 'no key of the issuer matches the token');
      if (candidates.length > 1) {
        throw new VerifierError('ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'several keys of the issuer match the token; it must name one by kid');
      }
      const resolved = importCached(candidates[0] as CachedKey, alg).then((key) => {
        if (key === undefined) throw new VerifierError('ERR_JWKS_NO_MATCHING_KEY', 'the key of the issuer that matches the token is not usable');
        return key;
      });
      set.resolved.set(cacheKey, resolved);
      // A key that fails to import is not cached as resolved: the next fetch may bring a good one.
      resolved.catch(() => set.resolved.delete(cacheKey));
      return resolved;
    },
  };
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
  const keys: CachedKey[] = [];
  for (const source of jwks.keys) {
    if (typeof source !== 'object' || source === null) continue;
    const jwk = publicMembers(source);
    // Keys of types we do not verify with, or missing members, are skipped, not fatal (RFC 7517 §5).
    if (jwk === undefined) continue;
    const kid = typeof source.kid === 'string' ? source.kid : undefined;
    keys.push({ kid, source, jwk, imported: new Map() });
  }
  return { keys, fetchedAt, resolved: new Map() };
}

/** The keys that may verify a token with this `alg` and `kid` (RFC 7517 §4.2–§4.5, RFC 7515 §4.1.4). */
function selectKeys(set: Snapshot, alg: SupportedAlgorithm, kid: string | undefined): CachedKey[] {
  return set.keys.filter((key) => (kid === undefined || key.kid === kid) && keyAllows(key.source, alg));
}

function keyAllows(jwk: JsonObject, alg: SupportedAlgorithm): boolean {
  if (!jwkFitsAlgorithm(jwk, alg)) return false;
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false;
  return jwk.alg === undefined || jwk.alg === alg;
}

function importCached(key: CachedKey, alg: SupportedAlgorithm): Promise<CryptoKey | undefined> {
  let imported = key.imported.get(alg);
  if (imported === undefined) {
    imported = importVerificationKey(key.jwk, alg);
    key.imported.set(alg, imported);
  }
  return imported;
}

/**
 * The token cache: one entry per key (see cache_key.ts), least recently used evicted beyond a size
 * bound, one request in flight per key however many callers wait, and refresh ahead of expiry.
 *
 * The cache knows nothing about OAuth: it is given a key and a function that obtains a checked
 * token, and decides only when a cached token may still be handed out.
 *
 * @module
 */
import type { AccessToken } from './access_token.js';

/** Options of {@link createTokenCache}. */
export interface TokenCacheOptions {
  /** Entries kept at most; the least recently used one goes first (default 1000). */
  readonly maxEntries?: number;
  /**
   * Fraction of a token's lifetime before its expiry at which a refresh starts (default 0.2): a
   * 300 s token is refreshed from 240 s on, while the current one is still handed out.
   */
  readonly refreshAhead?: number;
  /**
   * Up to this fraction of the lifetime is taken off the refresh time at random (default 0.1), so
   * that instances started together do not all refresh at the same instant.
   */
  readonly refreshJitter?: number;
  /**
   * A token is no longer handed out this long before it expires (default 30 s, at most a tenth of
   * its lifetime): a request must reach the API while the token is still valid there.
   */
  readonly expiryMarginSeconds?: number;
  /** Clock in epoch milliseconds (default `Date.now`). */
  readonly now?: () => number;
  /** Uniform random number in [0, 1) for the jitter (default `Math.random`). */
  readonly random?: () => number;
}

/** Counters, for tests, benchmarks and metrics. */
export interface TokenCacheStats {
  /** Calls answered from the cache. */
  readonly hits: number;
  /** Calls that found no usable entry. */
  readonly misses: number;
  /** Calls that waited for a request already in flight instead of starting one. */
  readonly joined: number;
  /** Token requests started (misses that started one, and refreshes). */
  readonly requests: number;
  /** Requests started ahead of expiry while the cached token was still handed out. */
  readonly refreshes: number;
  /** Entries dropped to keep within `maxEntries`. */
  readonly evictions: number;
  /** Entries dropped because the API rejected their token. */
  readonly dropped: number;
  readonly size: number;
}

/** A cache of checked access tokens; safe to share between clients (keys name the holder). */
export interface TokenCache {
  /**
   * The cached token for `key` if it may still be used, else the result of `obtain` — which runs
   * at most once at a time per key. Starts a refresh in the background when the entry is due.
   */
  get(key: string, obtain: () => Promise<AccessToken>): Promise<AccessToken>;
  /**
   * Drops the entry for `key` if it still holds the token `value` (the API rejected it); a newer
   * token cached meanwhile by another caller is kept. Returns whether an entry was dropped.
   */
  drop(key: string, value: string): boolean;
  /** Empties the cache; requests in flight are not stored. */
  clear(): void;
  stats(): TokenCacheStats;
}

interface Entry {
  readonly token: AccessToken;
  /** From here on the token is no longer handed out. */
  readonly usableUntil: number;
  /** From here on a refresh is started (moved later after a failed refresh). */
  refreshAt: number;
}

/** Creates an empty cache. */
export function createTokenCache(options: TokenCacheOptions = {}): TokenCache {
  const maxEntries = positiveInteger(options.maxEntries ?? 1000, 'maxEntries');
  const refreshAhead = fraction(options.refreshAhead ?? 0.2, 'refreshAhead');
  const refreshJitter = fraction(options.refreshJitter ?? 0.1, 'refreshJitter');
  const marginMs = nonNegative(options.expiryMarginSeconds ?? 30, 'expiryMarginSeconds') * 1000;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;

  // Map iteration order is insertion order: the first key is the least recently used.
  const entries = new Map<string, Entry>();
  const inFlight = new Map<string, Promise<AccessToken>>();
  let generation = 0;
  const counts = { hits: 0, misses: 0, joined: 0, requests: 0, refreshes: 0, evictions: 0, dropped: 0 };

  function entryFor(token: AccessToken): Entry | undefined {
    if (token.expiresAt === undefined) return undefined;
    const lifetime = token.expiresAt - token.obtainedAt;
    const usableUntil = token.expiresAt - Math.min(marginMs, lifetime / 10);
    const refreshAt = token.obtainedAt + lifetime * (1 - refreshAhead) - random() * refreshJitter * lifetime;
    return usableUntil > now() ? { token, usableUntil, refreshAt } : undefined;
  }

  function store(key: string, token: AccessToken): void {
    const entry = entryFor(token);
    if (entry === undefined) return;
    entries.delete(key);
    entries.set(key, entry);
    for (const oldest of entries.keys()) {
      if (entries.size <= maxEntries) break;
      entries.delete(oldest);
      counts.evictions += 1;
    }
  }

  function request(key: string, obtain: () => Promise<AccessToken>): Promise<AccessToken> {
    const startedIn = generation;
    counts.requests += 1;
    const flight = obtain().then((token) => {
      if (generation === startedIn) store(key, token);
      return token;
    });
    inFlight.set(key, flight);
    const settle = () => {
      if (inFlight.get(key) === flight) inFlight.delete(key);
    };
    flight.then(settle, settle);
    return flight;
  }

  function refreshInBackground(key: string, entry: Entry, obtain: () => Promise<AccessToken>): void {
    counts.refreshes += 1;
    request(key, obtain).then(
      (token) => {
        // A token that cannot be cached leaves the current one in place: try again later.
        if (token.expiresAt === undefined) postpone(entry);
      },
      () => postpone(entry),
    );
  }

  // After a failed refresh the current token is still good: retry a quarter of its remaining time later.
  function postpone(entry: Entry): void {
    const t = now();
    entry.refreshAt = t + Math.max(1000, (entry.usableUntil - t) / 4);
  }

  return {
    get(key, obtain) {
      const t = now();
      const entry = entries.get(key);
      // A clock that went back before the token was obtained says nothing reliable about its age.
      if (entry !== undefined && t >= entry.token.obtainedAt && t < entry.usableUntil) {
        counts.hits += 1;
        entries.delete(key);
        entries.set(key, entry);
        if (t >= entry.refreshAt && !inFlight.has(key)) refreshInBackground(key, entry, obtain);
        return Promise.resolve(entry.token);
      }
      if (entry !== undefined) entries.delete(key);
      counts.misses += 1;
      const flight = inFlight.get(key);
      if (flight !== undefined) {
        counts.joined += 1;
        return flight;
      }
      return request(key, obtain);
    },
    drop(key, value) {
      if (entries.get(key)?.token.value !== value) return false;
      entries.delete(key);
      counts.dropped += 1;
      return true;
    },
    clear() {
      generation += 1;
      entries.clear();
    },
    stats() {
      return { ...counts, size: entries.size };
    },
  };
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer`);
  return value;
}

function fraction(value: number, name: string): number {
  if (!(value >= 0 && value < 1)) throw new TypeError(`${name} must be in [0, 1)`);
  return value;
}

function nonNegative(value: number, name: string): number {
  if (!(value >= 0 && Number.isFinite(value))) throw new TypeError(`${name} must be a non-negative number`);
  return value;
}

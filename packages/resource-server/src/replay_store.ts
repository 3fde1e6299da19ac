/**
 * Replay detection for DPoP proofs (RFC 9449 §11.1): each proof's `jti` may be used once while the
 * proof is within its acceptance window.
 *
 * @module
 */

/**
 * Where used proof identifiers are recorded. Implement it over a shared store (PostgreSQL, Redis
 * `SET key 1 NX PXAT expiresAt`) when several instances serve the same API, otherwise a proof
 * replayed at another instance is not detected.
 */
export interface ReplayStore {
  /**
   * Records `key` until `expiresAt` (epoch milliseconds) and resolves `true` when it was already
   * recorded and not yet expired (a replay), `false` when it is new. Must be atomic.
   */
  seen(key: string, expiresAt: number): Promise<boolean>;
}

/** Options of {@link createMemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * Entries kept at most (default 100 000). When full, the oldest entry is dropped even if it has
   * not expired, which re-opens replay for that proof: size it above the peak number of proofs
   * accepted within one acceptance window.
   */
  maxEntries?: number;
  /** Clock in epoch milliseconds (for tests). */
  now?: () => number;
}

/** How many expired entries one call sweeps at most, so that a call stays O(1) amortized. */
const SWEEP_PER_CALL = 8;

/**
 * An in-memory, bounded replay store for one process. Entries are kept in insertion order, which
 * is (nearly) expiry order because every proof gets the same window, so expired entries and
 * overflow are both removed from the front.
 */
export function createMemoryReplayStore(options: MemoryReplayStoreOptions = {}): ReplayStore {
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new TypeError('maxEntries must be a positive integer');
  const entries = new Map<string, number>();

  function sweep(t: number): void {
    let swept = 0;
    for (const [key, expiresAt] of entries) {
      if (expiresAt > t || swept === SWEEP_PER_CALL) break;
      entries.delete(key);
      swept++;
    }
    while (entries.size > maxEntries) {
      const oldest = entries.keys().next();
      if (oldest.done === true) break;
      entries.delete(oldest.value);
    }
  }

  return {
    async seen(key, expiresAt) {
      const t = now();
      const existing = entries.get(key);
      if (existing !== undefined && existing > t) return true;
      entries.delete(key);
      entries.set(key, expiresAt);
      sweep(t);
      return false;
    },
  };
}

/**
 * One request at a time to a slow source (issuer metadata, the JWKS, a revocation list).
 *
 * @module
 */

/** A shared run of a loader; see {@link singleFlight}. */
export interface SingleFlight<T> {
  /** Joins the run under way, or starts one. */
  run(): Promise<T>;
  /** True while a run is under way. */
  running(): boolean;
}

/**
 * Concurrent callers share one run of `start`; once that run settles, successfully or not, the next
 * call starts a new one. Caching the result, and backing off after a failure, are the caller's.
 */
export function singleFlight<T>(start: () => Promise<T>): SingleFlight<T> {
  let current: Promise<T> | undefined;
  return {
    run: () =>
      (current ??= start().finally(() => {
        current = undefined;
      })),
    running: () => current !== undefined,
  };
}

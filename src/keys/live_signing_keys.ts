import type { JWK } from 'jose';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { watchKeyChanges, type KeyChangeFeed } from './key_change_feed.js';
import type { VerificationKeys } from './own_tokens.js';
import type { SigningPolicy } from './signing_policy.js';
import {
  encryptPlaintextKeys, loadSigningKeys, readKeyRingWithActiveKey, rotateIfDue, snapshotOf, type LoadedSigningKeys,
} from './signing_keys.js';

/**
 * The signing keys of a running instance, kept equal to the database without a restart:
 *
 * - a change to `signing_keys` (a rotation, retirement, anything) is announced by NOTIFY and re-read
 *   at once (key_change_feed.ts);
 * - a change by the clock alone (a staged key's activation, a retirement or withdrawal falling due)
 *   is re-read when it falls due;
 * - every `reloadIntervalMs` the keys are re-read anyway: the safety net for a lost notification;
 * - a token naming a `kid` this instance does not know makes it re-read too, bounded: one look per
 *   kid per `unknownKidCooldownMs`, and at most one re-read per second whatever the number of
 *   distinct made-up kids (requests arriving meanwhile wait for that one re-read);
 * - with `rotateEverySeconds`, the instance that gets the key-write lock stages the next key when due.
 *
 * A re-read that fails (database down, a key this instance cannot decrypt) keeps the previous keys
 * and is logged; the next trigger tries again.
 */
export interface LiveSigningKeys extends VerificationKeys {
  /** The keys to sign and publish with now. */
  current(): LoadedSigningKeys;
  /** Calls `apply` with the current keys now, and again on every change. */
  subscribe(apply: (keys: LoadedSigningKeys) => void): void;
  /** Re-reads the keys (coalesced with any re-read already under way). */
  reload(): Promise<void>;
  /** Stops listening and timers; waits for work under way. */
  close(): Promise<void>;
}

export interface LiveSigningKeysOptions {
  knex: Knex;
  policy: SigningPolicy;
  logger: Logger;
}

/** Re-reads for unknown kids are at most this frequent, however many distinct kids are presented. */
const UNKNOWN_KID_RELOAD_INTERVAL_MS = 1000;
/** How many recently looked-up unknown kids are remembered (oldest forgotten first). */
const MAX_REMEMBERED_KIDS = 10_000;
/** A clock-driven transition is re-read this long after it falls due (the database's clock decides). */
const TRANSITION_MARGIN_MS = 25;

export async function startLiveSigningKeys(options: LiveSigningKeysOptions): Promise<LiveSigningKeys> {
  const { knex, policy, logger } = options;
  const keyOptions = { algorithm: policy.algorithm, encryptionSecret: policy.encryptionSecret };
  let current = await loadSigningKeys(knex, keyOptions);
  let published = publishedByKid(current);
  const subscribers: ((keys: LoadedSigningKeys) => void)[] = [];
  const work = new Set<Promise<unknown>>();
  let closed = false;
  let transitionTimer: NodeJS.Timeout | undefined;

  const track = <T>(promise: Promise<T>): Promise<T> => {
    work.add(promise);
    void promise.finally(() => work.delete(promise)).catch(() => undefined);
    return promise;
  };

  async function readKeys(): Promise<void> {
    if (closed) return;
    const ring = await readKeyRingWithActiveKey(knex, keyOptions);
    if (policy.encryptionSecret !== undefined) await encryptPlaintextKeys(knex, ring, policy.encryptionSecret);
    const next = snapshotOf(ring, keyOptions);
    scheduleTransition(next);
    if (fingerprintOf(next) === fingerprintOf(current)) {
      current = next;
      return;
    }
    logger.info({ signing: kidsOf(next.jwks), published: kidsOf(next.publicJwks) }, 'signing keys changed');
    current = next;
    published = publishedByKid(next);
    for (const apply of subscribers) apply(next);
  }

  const reload = coalesced(() => track(readKeys()));

  function reloadLogged(trigger: string): void {
    reload().catch((error: unknown) => logger.warn({ err: error, trigger }, 'signing keys could not be re-read; keeping the previous ones'));
  }

  function scheduleTransition(keys: LoadedSigningKeys): void {
    clearTimeout(transitionTimer);
    const { nextTransitionAt, at } = keys.ring;
    if (closed || nextTransitionAt === undefined) return;
    const delay = nextTransitionAt.getTime() - at.getTime() + TRANSITION_MARGIN_MS;
    // Beyond setTimeout's range the periodic re-read gets there first anyway.
    if (delay > 2 ** 31 - 1) return;
    transitionTimer = setTimeout(() => reloadLogged('transition'), Math.max(0, delay));
    transitionTimer.unref();
  }

  async function rotateWhenDue(): Promise<void> {
    if (policy.rotateEverySeconds === undefined || closed) return;
    const kid = await rotateIfDue(knex, { ...keyOptions, ...policy, rotateEverySeconds: policy.rotateEverySeconds });
    if (kid) logger.info({ kid }, 'scheduled rotation: new signing key staged');
  }

  const unknownKids = unknownKidLookups({
    cooldownMs: policy.unknownKidCooldownMs,
    reload: () => reload(),
    isKnown: (kid) => published.has(kid),
  });

  const feed: KeyChangeFeed = await watchKeyChanges(knex, { changed: () => reloadLogged('notification'), logger });
  scheduleTransition(current);
  const periodic = setInterval(() => {
    reloadLogged('periodic');
    track(feed.check()).catch(() => undefined);
    track(rotateWhenDue()).catch((error: unknown) => logger.warn({ err: error }, 'scheduled rotation failed; retrying later'));
  }, policy.reloadIntervalMs);
  periodic.unref();
  track(rotateWhenDue()).catch((error: unknown) => logger.warn({ err: error }, 'scheduled rotation failed; retrying later'));

  return {
    current: () => current,
    subscribe(apply) {
      subscribers.push(apply);
      apply(current);
    },
    reload,
    async verificationKey(kid) {
      if (!published.has(kid)) await unknownKids.lookUp(kid);
      return published.get(kid);
    },
    async close() {
      closed = true;
      clearInterval(periodic);
      clearTimeout(transitionTimer);
      await feed.close();
      await Promise.allSettled([...work]);
    },
  };
}

function publishedByKid(keys: LoadedSigningKeys): Map<string, JWK> {
  return new Map(keys.publicJwks.keys.map((jwk) => [jwk.kid as string, jwk]));
}

function kidsOf(jwks: { keys: JWK[] }): string[] {
  return jwks.keys.map((jwk) => jwk.kid as string);
}

/** What is signed with and published, in order: equal fingerprints need no change in oidc-provider. */
function fingerprintOf(keys: LoadedSigningKeys): string {
  return `${kidsOf(keys.jwks).join(',')}|${kidsOf(keys.publicJwks).join(',')}`;
}

/**
 * A run requested while one is under way starts once that one has finished (so it sees every change
 * announced before the request), and all requests made meanwhile share it.
 */
function coalesced(run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const request = (): Promise<void> => {
    if (!running) {
      running = run().finally(() => {
        running = undefined;
      });
      return running;
    }
    next ??= running.catch(() => undefined).then(() => {
      next = undefined;
      return request();
    });
    return next;
  };
  return request;
}

/**
 * Bounded database lookups for kids this instance does not know. A kid is looked up at most once per
 * `cooldownMs` (concurrent requests for it share the lookup); lookups of distinct kids share re-reads,
 * of which there is at most one per UNKNOWN_KID_RELOAD_INTERVAL_MS.
 */
function unknownKidLookups(options: { cooldownMs: number; reload: () => Promise<void>; isKnown: (kid: string) => boolean }) {
  const asked = new Map<string, { at: number; lookup: Promise<void> }>();
  let scheduled: Promise<void> | undefined;
  let lastReloadAt = -Infinity;

  function sharedReload(): Promise<void> {
    scheduled ??= new Promise<void>((resolve) => {
      const wait = Math.max(0, lastReloadAt + UNKNOWN_KID_RELOAD_INTERVAL_MS - performance.now());
      setTimeout(resolve, wait).unref();
    }).then(() => {
      scheduled = undefined;
      lastReloadAt = performance.now();
      return options.reload();
    });
    return scheduled;
  }

  function remember(kid: string, entry: { at: number; lookup: Promise<void> }): void {
    asked.delete(kid);
    if (asked.size >= MAX_REMEMBERED_KIDS) asked.delete(asked.keys().next().value as string);
    asked.set(kid, entry);
  }

  return {
    async lookUp(kid: string): Promise<void> {
      const previous = asked.get(kid);
      if (previous && performance.now() - previous.at < options.cooldownMs) return previous.lookup;
      const lookup = sharedReload();
      const entry = { at: performance.now(), lookup };
      remember(kid, entry);
      try {
        await lookup;
      } catch (error) {
        // Nothing was learnt: the next request for this kid asks again (and, meanwhile, fails too).
        if (asked.get(kid) === entry) asked.delete(kid);
        throw error;
      }
      // A kid found is no longer "unknown"; only misses need remembering.
      if (options.isKnown(kid)) asked.delete(kid);
    },
  };
}

// The cache on its own, with an injected clock: when a cached token is handed out, refreshed,
// evicted or dropped, and that concurrent misses share one request.
import type { AccessToken } from '../../packages/client/src/access_token.js';
import { createTokenCache, type TokenCacheOptions } from '../../packages/client/src/token_cache.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms), set: (ms: number) => (t = ms) };
}

let serial = 0;
function token(now: number, lifetimeMs: number | undefined): AccessToken {
  serial += 1;
  return {
    value: `token-${serial}`, type: 'Bearer', resource: 'https://api.example', scopes: ['read'],
    obtainedAt: now, expiresAt: lifetimeMs === undefined ? undefined : now + lifetimeMs, claims: undefined,
  };
}

function setup(options: TokenCacheOptions = {}) {
  const time = clock();
  const cache = createTokenCache({ now: time.now, random: () => 0, ...options });
  const issued: AccessToken[] = [];
  // null: the server named no lifetime.
  const obtain = (lifetimeMs: number | null = 300_000) => async () => {
    const issuedToken = token(time.now(), lifetimeMs ?? undefined);
    issued.push(issuedToken);
    return issuedToken;
  };
  return { time, cache, issued, obtain };
}

describe('hits, expiry and refresh ahead', () => {
  test('a second get within the lifetime is a hit: no second request', async () => {
    const { cache, obtain, issued } = setup();
    const first = await cache.get('k', obtain());
    expect(await cache.get('k', obtain())).toBe(first);
    expect(issued).toHaveLength(1);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, requests: 1, size: 1 });
  });

  test('refresh starts at 80% of the lifetime (jitter 0) while the current token is still handed out', async () => {
    const { cache, obtain, issued, time } = setup();
    const first = await cache.get('k', obtain());
    time.advance(239_999);
    expect(await cache.get('k', obtain())).toBe(first);
    expect(issued).toHaveLength(1);
    time.advance(1);
    // Due: the current token is returned at once and a new one is requested in the background.
    expect(await cache.get('k', obtain())).toBe(first);
    expect(issued).toHaveLength(2);
    await Promise.resolve();
    expect(await cache.get('k', obtain())).toBe(issued[1]);
    expect(cache.stats().refreshes).toBe(1);
  });

  test('jitter moves the refresh earlier by up to refreshJitter of the lifetime', async () => {
    const time = clock();
    const cache = createTokenCache({ now: time.now, random: () => 0.999 });
    const issued: AccessToken[] = [];
    const obtain = async () => {
      const t = token(time.now(), 100_000);
      issued.push(t);
      return t;
    };
    await cache.get('k', obtain);
    time.advance(70_100); // due from 100 s × (1 − 0.2 − 0.0999) = 70.01 s
    await cache.get('k', obtain);
    expect(issued).toHaveLength(2);
  });

  test('a token is not handed out in its last 30 s (or last tenth of its lifetime)', async () => {
    const { cache, obtain, issued, time } = setup({ refreshAhead: 0 });
    await cache.get('k', obtain());
    time.advance(270_000);
    await cache.get('k', obtain());
    expect(issued).toHaveLength(2);

    const short = setup({ refreshAhead: 0 });
    await short.cache.get('k', short.obtain(20_000));
    short.time.advance(17_999);
    await short.cache.get('k', short.obtain(20_000));
    expect(short.issued).toHaveLength(1);
    short.time.advance(1);
    await short.cache.get('k', short.obtain(20_000));
    expect(short.issued).toHaveLength(2);
  });

  test('a clock that jumps back before the token was obtained makes the entry unusable', async () => {
    const { cache, obtain, issued, time } = setup();
    await cache.get('k', obtain());
    time.advance(-1);
    await cache.get('k', obtain());
    expect(issued).toHaveLength(2);
  });

  test('a clock that jumps past the expiry makes the entry unusable', async () => {
    const { cache, obtain, issued, time } = setup();
    await cache.get('k', obtain());
    time.advance(3_600_000);
    const fresh = await cache.get('k', obtain());
    expect(fresh).toBe(issued[1]);
  });

  test('a token without a lifetime is handed to its waiters and never cached', async () => {
    const { cache, obtain, issued } = setup();
    const [a, b] = await Promise.all([cache.get('k', obtain(null)), cache.get('k', obtain(null))]);
    expect(a).toBe(b);
    await cache.get('k', obtain(null));
    expect(issued).toHaveLength(2);
    expect(cache.stats().size).toBe(0);
  });

  test('a failed refresh keeps the current token and is retried later, not on every call', async () => {
    const { cache, obtain, time } = setup();
    const first = await cache.get('k', obtain());
    time.advance(250_000);
    let attempts = 0;
    const failing = async () => {
      attempts += 1;
      throw new Error('token endpoint down');
    };
    expect(await cache.get('k', failing)).toBe(first);
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 10; i += 1) expect(await cache.get('k', failing)).toBe(first);
    expect(attempts).toBe(1);
    time.advance(10_000); // a quarter of the remaining usable time later
    await cache.get('k', failing);
    expect(attempts).toBe(2);
  });
});

describe('single flight', () => {
  test('100 concurrent misses → one request, every caller gets its token', async () => {
    const { cache, obtain, issued } = setup();
    const tokens = await Promise.all(Array.from({ length: 100 }, () => cache.get('k', obtain())));
    expect(issued).toHaveLength(1);
    expect(new Set(tokens)).toEqual(new Set([issued[0]]));
    expect(cache.stats()).toMatchObject({ requests: 1, joined: 99 });
  });

  test('a failed request fails its waiters, is not cached, and the next call tries again', async () => {
    const { cache, obtain, issued } = setup();
    let calls = 0;
    const failing = async () => {
      calls += 1;
      throw new Error('refused');
    };
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.get('k', failing)));
    expect(results.every((result) => result.status === 'rejected')).toBe(true);
    expect(calls).toBe(1);
    await cache.get('k', obtain());
    expect(issued).toHaveLength(1);
  });

  test('different keys do not share a request', async () => {
    const { cache, obtain, issued } = setup();
    await Promise.all([cache.get('a', obtain()), cache.get('b', obtain())]);
    expect(issued).toHaveLength(2);
  });
});

describe('drop, eviction, clear', () => {
  test('drop removes the entry only while it still holds the rejected token', async () => {
    const { cache, obtain, issued } = setup();
    const first = await cache.get('k', obtain());
    expect(cache.drop('k', 'some-other-token')).toBe(false);
    expect(cache.drop('k', first.value)).toBe(true);
    const second = await cache.get('k', obtain());
    // A late rejection of the first token must not drop its replacement.
    expect(cache.drop('k', first.value)).toBe(false);
    expect(await cache.get('k', obtain())).toBe(second);
    expect(issued).toHaveLength(2);
  });

  test('beyond maxEntries the least recently used entry is evicted', async () => {
    const { cache, obtain, issued } = setup({ maxEntries: 3 });
    for (const key of ['a', 'b', 'c']) await cache.get(key, obtain());
    await cache.get('a', obtain()); // a is now the most recent
    await cache.get('d', obtain()); // evicts b
    expect(cache.stats()).toMatchObject({ size: 3, evictions: 1 });
    await cache.get('a', obtain());
    await cache.get('c', obtain());
    expect(issued).toHaveLength(4);
    await cache.get('b', obtain());
    expect(issued).toHaveLength(5);
  });

  test('the size bound holds under many keys', async () => {
    const { cache, obtain } = setup({ maxEntries: 10 });
    for (let i = 0; i < 1000; i += 1) await cache.get(`k${i}`, obtain());
    expect(cache.stats()).toMatchObject({ size: 10, evictions: 990 });
  });

  test('clear empties the cache and a request in flight is not stored', async () => {
    const { cache, obtain, issued, time } = setup();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = async () => {
      await gate;
      return token(time.now(), 300_000);
    };
    const pending = cache.get('k', slow);
    cache.clear();
    release();
    await pending;
    expect(cache.stats().size).toBe(0);
    await cache.get('k', obtain());
    expect(issued).toHaveLength(1);
  });

  test('options are checked', () => {
    expect(() => createTokenCache({ maxEntries: 0 })).toThrow(TypeError);
    expect(() => createTokenCache({ refreshAhead: 1 })).toThrow(TypeError);
    expect(() => createTokenCache({ refreshJitter: -0.1 })).toThrow(TypeError);
    expect(() => createTokenCache({ expiryMarginSeconds: Number.NaN })).toThrow(TypeError);
  });
});

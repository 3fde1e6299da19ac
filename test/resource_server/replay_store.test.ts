// The in-memory replay store and the rotating nonce source.
import { createMemoryReplayStore, createRotatingDpopNonce } from '../../src/resource_server/index.js';

test('a key is seen once until it expires', async () => {
  let now = 1_000;
  const store = createMemoryReplayStore({ now: () => now });
  expect(await store.seen('a', 2_000)).toBe(false);
  expect(await store.seen('a', 2_000)).toBe(true);
  now = 2_000;
  expect(await store.seen('a', 3_000)).toBe(false);
});

test('the store is bounded: the oldest entries go first', async () => {
  const store = createMemoryReplayStore({ maxEntries: 3, now: () => 0 });
  for (const key of ['a', 'b', 'c', 'd']) expect(await store.seen(key, 10)).toBe(false);
  expect(await store.seen('d', 10)).toBe(true);
  expect(await store.seen('c', 10)).toBe(true);
  // 'a' was evicted to make room for 'd'.
  expect(await store.seen('a', 10)).toBe(false);
});

test('expired entries are swept as new ones arrive', async () => {
  let now = 0;
  const store = createMemoryReplayStore({ maxEntries: 1000, now: () => now });
  for (let i = 0; i < 100; i++) await store.seen(`old-${i}`, 10);
  now = 20;
  for (let i = 0; i < 20; i++) await store.seen(`new-${i}`, 100);
  // 20 calls sweep up to 8 expired entries each: all 100 old ones are gone, none of the new.
  for (let i = 0; i < 20; i++) expect(await store.seen(`new-${i}`, 100)).toBe(true);
});

test('maxEntries must be a positive integer', () => {
  expect(() => createMemoryReplayStore({ maxEntries: 0 })).toThrow(TypeError);
});

test('rotating nonces: current and previous are valid, older ones are not', () => {
  let now = 0;
  const source = createRotatingDpopNonce({ rotationSeconds: 10, now: () => now });
  const first = source.current() as string;
  expect(first).toMatch(/^[A-Za-z0-9_-]{22}$/);
  expect(source.isValid(first)).toBe(true);
  now = 10_000;
  const second = source.current() as string;
  expect(second).not.toBe(first);
  expect(source.isValid(first)).toBe(true);
  now = 20_000;
  expect(source.isValid(first)).toBe(false);
  expect(source.isValid(second)).toBe(true);
  now = 60_000;
  expect(source.isValid(second)).toBe(false);
});

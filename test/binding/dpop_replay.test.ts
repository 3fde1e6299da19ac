import knexFactory, { type Knex } from 'knex';

import { recordProofOnce } from '../../src/binding/dpop_replay.js';
import { hashIdentifier } from '../../src/storage/hash_id.js';
import { openTestDatabase } from '../support/database.js';

type TestDatabase = Awaited<ReturnType<typeof openTestDatabase>>;

let database: TestDatabase;
let knex: Knex;

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
});

afterAll(async () => {
  await database.close();
});

const inOneMinute = (): Date => new Date(Date.now() + 60_000);

describe('recordProofOnce', () => {
  it('records a proof once and reports the replay', async () => {
    expect(await recordProofOnce(knex, { key: 'jkt-1:jti-1', expiresAt: inOneMinute() })).toBe(true);
    expect(await recordProofOnce(knex, { key: 'jkt-1:jti-1', expiresAt: inOneMinute() })).toBe(false);
    expect(await recordProofOnce(knex, { key: 'jkt-1:jti-2', expiresAt: inOneMinute() })).toBe(true);
  });

  it('stores only the hash of the key', async () => {
    await recordProofOnce(knex, { key: 'jkt-2:jti-secret', expiresAt: inOneMinute() });
    const keys = (await knex('dpop_proofs').pluck('key_hash')) as string[];
    expect(keys).toContain(hashIdentifier('jkt-2:jti-secret'));
    expect(keys.join(' ')).not.toContain('jti-secret');
  });

  it('treats an expired, unswept record as absent', async () => {
    expect(await recordProofOnce(knex, { key: 'jkt-3:jti-old', expiresAt: new Date(Date.now() - 1000) })).toBe(true);
    expect(await recordProofOnce(knex, { key: 'jkt-3:jti-old', expiresAt: inOneMinute() })).toBe(true);
    expect(await recordProofOnce(knex, { key: 'jkt-3:jti-old', expiresAt: inOneMinute() })).toBe(false);
  });

  it('gives exactly one true per key when two instances race (PostgreSQL: two connection pools)', async () => {
    // With PGlite there is one connection, so "two instances" are two callers on the same knex.
    const other = database.url === undefined ? knex : knexFactory({ client: 'pg', connection: database.url });
    try {
      const keys = Array.from({ length: 25 }, (_, index) => `race-jkt:jti-${index}`);
      const outcomes = await Promise.all(
        keys.map(async (key) => {
          const expiresAt = inOneMinute();
          const results = await Promise.all([recordProofOnce(knex, { key, expiresAt }), recordProofOnce(other, { key, expiresAt })]);
          return results.filter(Boolean).length;
        }),
      );
      expect(outcomes).toEqual(keys.map(() => 1));
    } finally {
      if (other !== knex) await other.destroy();
    }
  });
});

import knexFactory, { type Knex } from 'knex';

import { proofReplayCheck, recordProofOnce, recordProofsOnce } from '../../src/binding/dpop_replay.js';
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

describe('recordProofsOnce (one statement for many proofs)', () => {
  it('answers per proof: new ones true, recorded ones false, a key repeated in the list true only the first time', async () => {
    await recordProofOnce(knex, { key: 'batch-jkt:seen', expiresAt: inOneMinute() });
    const answers = await recordProofsOnce(knex, [
      { key: 'batch-jkt:a', expiresAt: inOneMinute() },
      { key: 'batch-jkt:seen', expiresAt: inOneMinute() },
      { key: 'batch-jkt:b', expiresAt: inOneMinute() },
      { key: 'batch-jkt:a', expiresAt: inOneMinute() },
    ]);
    expect(answers).toEqual([true, false, true, false]);
    const stored = (await knex('dpop_proofs').whereIn('key_hash', ['batch-jkt:a', 'batch-jkt:b'].map(hashIdentifier)).pluck('key_hash')) as string[];
    expect(stored.sort()).toEqual(['batch-jkt:a', 'batch-jkt:b'].map(hashIdentifier).sort());
  });

  it('gives exactly one true per key when two instances send overlapping batches in opposite orders (no deadlock)', async () => {
    const other = database.url === undefined ? knex : knexFactory({ client: 'pg', connection: database.url });
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const keys = Array.from({ length: 20 }, (_, index) => ({ key: `opposite-${attempt}:jti-${index}`, expiresAt: inOneMinute() }));
        const [mine, theirs] = await Promise.all([recordProofsOnce(knex, keys), recordProofsOnce(other, [...keys].reverse())]);
        const theirsInOrder = [...theirs].reverse();
        expect(keys.map((_, index) => Number(mine[index]) + Number(theirsInOrder[index]))).toEqual(keys.map(() => 1));
      }
    } finally {
      if (other !== knex) await other.destroy();
    }
  });
});

describe('proofReplayCheck (the token path: concurrent checks share statements)', () => {
  it('sends concurrent checks in fewer statements than checks, and a proof presented twice at once passes once', async () => {
    const check = proofReplayCheck(knex);
    const statements: string[] = [];
    const onQuery = (query: { sql: string }) => statements.push(query.sql);
    knex.on('query', onQuery);
    let answers: boolean[];
    try {
      const proofs = Array.from({ length: 30 }, (_, index) => ({ key: `shared-jkt:jti-${index % 15}`, expiresAt: inOneMinute() }));
      answers = await Promise.all(proofs.map((proof) => check.recordOnce(proof)));
    } finally {
      knex.off('query', onQuery);
    }
    const perKey = new Map<number, number>();
    answers.forEach((answer, index) => perKey.set(index % 15, (perKey.get(index % 15) ?? 0) + Number(answer)));
    expect([...perKey.values()]).toEqual(Array.from({ length: 15 }, () => 1));
    const replayStatements = statements.filter((sql) => sql.includes('INSERT INTO dpop_proofs'));
    expect(replayStatements.length).toBeGreaterThanOrEqual(2);
    expect(replayStatements.length).toBeLessThan(30);
  });

  it('refuses at once when the queue is full (the token path answers 503)', async () => {
    const check = proofReplayCheck(knex, { queueLimit: 1 });
    const results = await Promise.allSettled([1, 2, 3].map((index) => check.recordOnce({ key: `full-queue:jti-${index}`, expiresAt: inOneMinute() })));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ name: 'ProofQueueError', message: '1 DPoP proofs already wait for the database (database.queueLimit)' });
  });
});

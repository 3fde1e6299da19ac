import { randomUUID } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';

import { proofRecordOf, type ProofRecord } from '../../src/binding/dpop_replay.js';
import { ensureClientStates } from '../../src/ledger/client_states.js';
import { createIssuanceLedger } from '../../src/ledger/issuance_recorder.js';
import { ProofReplayedError, recordIssuances, type IssuanceOutcome, type IssuanceRow } from '../../src/ledger/record_issuance.js';
import { hashIdentifier } from '../../src/storage/hash_id.js';
import { openTestDatabase } from '../support/database.js';

/**
 * RFC 9449 §11.1 on the run's database: a DPoP proof is recorded by the issuance statement of the
 * token it binds (ledger/record_issuance.ts), so a proof gives one token at most — across
 * statements, within one statement, across instances — and a refused token writes nothing.
 */

type TestDatabase = Awaited<ReturnType<typeof openTestDatabase>>;

let database: TestDatabase;
let knex: Knex;

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
  await ensureClientStates(knex, ['dpop-worker', 'dpop-gone']);
  await knex('client_states').where({ client_id: 'dpop-gone' }).update({ suspended: true });
});

afterAll(async () => {
  await database.close();
});

const inOneMinute = (): Date => new Date(Date.now() + 60_000);

/** A DPoP-bound client_credentials issuance whose proof is `proof` (key `jkt\0jti`). */
function row(proof: ProofRecord, options: { tokenId?: string; clientId?: string; parent?: string } = {}): IssuanceRow {
  return {
    type: options.parent ? 'token.exchanged' : 'token.issued', client_id: options.clientId ?? 'dpop-worker', subject: null,
    resource: 'https://orders.test', scope: 'orders:read', token_id: options.tokenId ?? randomUUID(), token_format: 'jwt',
    binding_method: 'dpop', binding_thumbprint: proof.key.split('\0')[0]!, expires_at: inOneMinute().toISOString(),
    parent_token_id: options.parent ?? null, actor: options.parent ? 'dpop-worker' : null, request_id: 'replay-test', source_address: null,
    instance_id: 'test', issued_at: new Date().toISOString(), act: null, external_issuer: null, external_subject: null, external_token_id: null,
    proof_key_hash: hashIdentifier(proof.key), proof_expires_at: proof.expiresAt.toISOString(),
  };
}

const proof = (jkt: string, jti: string, expiresAt = inOneMinute()): ProofRecord => ({ key: `${jkt}\0${jti}`, expiresAt });

/** 'recorded', or the refusal's class and private detail. */
function outcomeOf(outcome: IssuanceOutcome | undefined): unknown {
  if (!outcome) return 'no answer';
  return outcome.recorded ? 'recorded' : { error: outcome.error.name, detail: outcome.error.message };
}

async function record(rows: IssuanceRow[], on: Knex = knex): Promise<unknown[]> {
  const outcomes = await recordIssuances(on, rows);
  return rows.map((given) => outcomeOf(outcomes.get(given.token_id)));
}

async function writtenFor(tokenId: string): Promise<number> {
  const [events, tokens] = await Promise.all([
    knex('ledger_events').where({ token_id: tokenId }).count<{ count: string }[]>({ count: '*' }),
    knex('issued_tokens').where({ token_id: tokenId }).count<{ count: string }[]>({ count: '*' }),
  ]);
  return Number(events[0]!.count) + Number(tokens[0]!.count);
}

const replayed = (jkt: string) => ({ error: 'ProofReplayedError', detail: `replayed DPoP proof jti for jkt ${jkt}` });

describe('proofRecordOf', () => {
  it('keys a proof by its key thumbprint and jti, and remembers it for the proof window past its iat or now, whichever is later', () => {
    const now = Date.UTC(2030, 0, 1);
    expect(proofRecordOf({ thumbprint: 'jkt-a', jti: 'jti-a', iat: now / 1000 + 20 }, now))
      .toEqual({ key: 'jkt-a\0jti-a', expiresAt: new Date(now + 320_000) });
    expect(proofRecordOf({ thumbprint: 'jkt-a', jti: 'jti-a', iat: now / 1000 - 100 }, now))
      .toEqual({ key: 'jkt-a\0jti-a', expiresAt: new Date(now + 300_000) });
  });
});

describe('the issuance statement records each DPoP proof once', () => {
  it('records a token with a new proof, refuses a second token with that proof and writes nothing of it, takes another jti', async () => {
    const first = row(proof('jkt-1', 'jti-1'));
    const again = row(proof('jkt-1', 'jti-1'));
    expect(await record([first])).toEqual(['recorded']);
    expect(await record([again])).toEqual([replayed('jkt-1')]);
    expect(await writtenFor(again.token_id)).toBe(0);
    expect(await writtenFor(first.token_id)).toBe(2);
    expect(await record([row(proof('jkt-1', 'jti-2'))])).toEqual(['recorded']);
    // The same jti under another key is another proof.
    expect(await record([row(proof('jkt-other', 'jti-1'))])).toEqual(['recorded']);
  });

  it('stores only the hash of the proof key', async () => {
    await record([row(proof('jkt-2', 'jti-secret'))]);
    const keys = (await knex('dpop_proofs').pluck('key_hash')) as string[];
    expect(keys).toContain(hashIdentifier('jkt-2\0jti-secret'));
    expect(keys.join(' ')).not.toContain('jti-secret');
  });

  it('treats an expired, unswept record as unused, and the renewed one as used', async () => {
    expect(await record([row(proof('jkt-3', 'jti-old', new Date(Date.now() - 1000)))])).toEqual(['recorded']);
    expect(await record([row(proof('jkt-3', 'jti-old'))])).toEqual(['recorded']);
    expect(await record([row(proof('jkt-3', 'jti-old'))])).toEqual([replayed('jkt-3')]);
  });

  it('gives one token to a proof that appears twice in one statement (the lower token id), and answers the rest of the statement as usual', async () => {
    const shared = proof('jkt-4', 'jti-shared');
    const rows = [
      row(shared, { tokenId: 'b-second-of-shared' }),
      row(proof('jkt-4', 'jti-alone')),
      row(shared, { tokenId: 'a-first-of-shared' }),
      row(proof('jkt-4', 'jti-gone'), { clientId: 'dpop-gone' }),
    ];
    expect(await record(rows)).toEqual([
      replayed('jkt-4'), 'recorded', 'recorded', { error: 'ClientSuspendedError', detail: 'client dpop-gone is suspended' },
    ]);
    expect(await writtenFor('b-second-of-shared')).toBe(0);
    // The suspended client's proof was used by its (refused) request all the same.
    expect(await record([row(proof('jkt-4', 'jti-gone'))])).toEqual([replayed('jkt-4')]);
  });

  it('records the proof of an exchanged token, and refuses the proof used again for another exchange', async () => {
    const parent = randomUUID();
    expect(await record([{ ...row(proof('jkt-5', 'jti-root')), token_id: parent }])).toEqual(['recorded']);
    const exchange = row(proof('jkt-5', 'jti-exchange'), { parent });
    expect(await record([exchange])).toEqual(['recorded']);
    expect(await record([row(proof('jkt-5', 'jti-exchange'), { parent })])).toEqual([replayed('jkt-5')]);
    // A proof first used for client_credentials cannot be used for an exchange either.
    expect(await record([row(proof('jkt-5', 'jti-root'), { parent })])).toEqual([replayed('jkt-5')]);
  });

  it('gives exactly one token per proof when two instances race (PostgreSQL: two connection pools)', async () => {
    // With PGlite there is one connection, so "two instances" are two callers on the same knex.
    const other = database.url === undefined ? knex : knexFactory({ client: 'pg', connection: database.url });
    try {
      const outcomes = await Promise.all(Array.from({ length: 25 }, async (_, index) => {
        const shared = proof('race-jkt', `jti-${index}`);
        const answers = await Promise.all([record([row(shared)]), record([row(shared)], other)]);
        return answers.flat().filter((answer) => answer === 'recorded').length;
      }));
      expect(outcomes).toEqual(Array.from({ length: 25 }, () => 1));
    } finally {
      if (other !== knex) await other.destroy();
    }
  });

  it('gives exactly one token per proof when two instances send overlapping statements in opposite orders (no deadlock)', async () => {
    const other = database.url === undefined ? knex : knexFactory({ client: 'pg', connection: database.url });
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const proofs = Array.from({ length: 20 }, (_, index) => proof(`opposite-${attempt}`, `jti-${index}`));
        const [mine, theirs] = await Promise.all([record(proofs.map((each) => row(each)), knex), record([...proofs].reverse().map((each) => row(each)), other)]);
        const theirsInOrder = [...theirs].reverse();
        expect(proofs.map((_, index) => [mine[index], theirsInOrder[index]].filter((answer) => answer === 'recorded').length))
          .toEqual(proofs.map(() => 1));
      }
    } finally {
      if (other !== knex) await other.destroy();
    }
  });
});

describe('the token path: concurrent DPoP issuances share statements', () => {
  it('records the tokens of 30 concurrent issuances over 15 proofs in fewer statements than issuances: one token per proof, no other statement for the proofs', async () => {
    const ledger = createIssuanceLedger(knex);
    const statements: string[] = [];
    const onQuery = (query: { sql: string }) => statements.push(query.sql);
    knex.on('query', onQuery);
    let results: PromiseSettledResult<void>[];
    const facts = { requestId: 'replay-test', sourceAddress: undefined, instanceId: 'test' };
    try {
      results = await Promise.allSettled(Array.from({ length: 30 }, (_, index) => {
        const now = new Date();
        return ledger.recordIssuance({
          type: 'token.issued',
          issued: {
            value: '', format: 'jwt', tokenId: randomUUID(), clientId: 'dpop-worker', resource: 'https://orders.test', scope: ['orders:read'],
            binding: { method: 'dpop', thumbprint: 'shared-jkt', singleUseProof: proof('shared-jkt', `jti-${index % 15}`) },
            issuedAt: now, expiresAt: new Date(now.getTime() + 60_000),
          },
        }, facts);
      }));
    } finally {
      knex.off('query', onQuery);
    }
    const perProof = new Map<number, number>();
    results.forEach((result, index) => perProof.set(index % 15, (perProof.get(index % 15) ?? 0) + Number(result.status === 'fulfilled')));
    expect([...perProof.values()]).toEqual(Array.from({ length: 15 }, () => 1));
    const refusals = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected').map((result) => result.reason as unknown);
    expect(refusals).toHaveLength(15);
    expect(refusals.every((reason) => reason instanceof ProofReplayedError && reason.thumbprint === 'shared-jkt')).toBe(true);
    expect(statements.every((sql) => sql.includes('INSERT INTO ledger_events'))).toBe(true);
    expect(statements.length).toBeGreaterThanOrEqual(2);
    expect(statements.length).toBeLessThan(30);
  });
});

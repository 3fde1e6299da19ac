import { jest } from '@jest/globals';
import { ClientSuspendedError, ParentRefusedError, type IssuanceOutcome, type IssuanceRow } from '../../src/ledger/record_issuance.js';
import { issuanceBatcher, IssuanceQueueError } from '../../src/ledger/issuance_batcher.js';

/** The batcher alone, with a scripted statement: grouping, per-issuance outcomes, failure of a whole statement, bounded waits. */

const row = (tokenId: string, clientId = 'c'): IssuanceRow => ({
  type: 'token.issued', client_id: clientId, subject: null, resource: 'r', scope: '', token_id: tokenId, token_format: 'jwt', binding_method: 'bearer',
  binding_thumbprint: null, expires_at: '2030-01-01T00:00:00Z', parent_token_id: null, actor: null, request_id: 'q', source_address: null,
  instance_id: 'i', issued_at: '2030-01-01T00:00:00Z', act: null, external_issuer: null, external_subject: null, external_token_id: null,
  proof_key_hash: null, proof_expires_at: null,
});

interface Statement {
  rows: IssuanceRow[];
  /** Commits: the given ids are recorded, the others refused (by default: as the statement says of a suspended client). */
  finish(recorded?: string[], refusalOf?: (row: IssuanceRow) => IssuanceOutcome): void;
  fail(error: Error): void;
}

const suspended = (row: IssuanceRow): IssuanceOutcome => ({ recorded: false, error: new ClientSuspendedError(row.client_id) });

function scriptedDatabase() {
  const statements: Statement[] = [];
  const write = (rows: IssuanceRow[]) => new Promise<Map<string, IssuanceOutcome>>((resolve, reject) => {
    statements.push({
      rows,
      finish: (recorded = rows.map((item) => item.token_id), refusalOf = suspended) => resolve(new Map(rows.map((item) => [
        item.token_id, recorded.includes(item.token_id) ? { recorded: true } : refusalOf(item),
      ]))),
      fail: reject,
    });
  });
  return { statements, write };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('issuance batcher', () => {
  test('depth() reports the issuances waiting and the statements running (the metrics gauges read it)', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 2 });
    expect(batcher.depth()).toEqual({ waiting: 0, inFlight: 0 });
    const recorded = ['a', 'b', 'c', 'd'].map((id) => batcher.record(row(id)));
    expect(batcher.depth()).toEqual({ waiting: 2, inFlight: 2 });
    database.statements[0]!.finish();
    await recorded[0];
    await tick();
    // The two waiting went together into the freed statement slot.
    expect(batcher.depth()).toEqual({ waiting: 0, inFlight: 2 });
    database.statements[1]!.finish();
    database.statements[2]!.finish();
    await Promise.all(recorded);
    await tick();
    expect(batcher.depth()).toEqual({ waiting: 0, inFlight: 0 });
  });

  test('the first issuance is written at once; those arriving meanwhile share the next statement', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1 });
    const first = batcher.record(row('a'));
    const later = ['b', 'c', 'd'].map((id) => batcher.record(row(id)));
    expect(database.statements.map((statement) => statement.rows.map((item) => item.token_id))).toEqual([['a']]);

    database.statements[0]!.finish();
    await first;
    await tick();
    expect(database.statements[1]!.rows.map((item) => item.token_id)).toEqual(['b', 'c', 'd']);
    database.statements[1]!.finish();
    await Promise.all(later);
  });

  test("gather: 'turn' (PGlite) sends the first issuance after this turn, together with the others of the turn", async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1, gather: 'turn' });
    const sameTurn = ['a', 'b', 'c'].map((id) => batcher.record(row(id)));
    expect(database.statements).toHaveLength(0);
    expect(batcher.depth()).toEqual({ waiting: 3, inFlight: 0 });
    await tick();
    expect(database.statements.map((statement) => statement.rows.map((item) => item.token_id))).toEqual([['a', 'b', 'c']]);
    // While it runs, the next turn's issuances wait for it, as with gather: 'now'.
    const nextTurn = ['d', 'e'].map((id) => batcher.record(row(id)));
    await tick();
    expect(database.statements).toHaveLength(1);
    database.statements[0]!.finish();
    await Promise.all(sameTurn);
    await tick();
    expect(database.statements[1]!.rows.map((item) => item.token_id)).toEqual(['d', 'e']);
    database.statements[1]!.finish();
    await Promise.all(nextTurn);
    expect(batcher.depth()).toEqual({ waiting: 0, inFlight: 0 });
  });

  test("gather: 'turn' keeps the bounds: a full queue refuses at once, maxBatch splits the turn", async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1, gather: 'turn', maxBatch: 2, queueLimit: 3 });
    const accepted = ['a', 'b', 'c'].map((id) => batcher.record(row(id)));
    await expect(batcher.record(row('d'))).rejects.toBeInstanceOf(IssuanceQueueError);
    await tick();
    expect(database.statements.map((statement) => statement.rows.map((item) => item.token_id))).toEqual([['a', 'b']]);
    database.statements[0]!.finish();
    await tick();
    await tick();
    expect(database.statements[1]!.rows.map((item) => item.token_id)).toEqual(['c']);
    database.statements[1]!.finish();
    await Promise.all(accepted);
  });

  test('nothing resolves before its statement has committed', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write);
    let resolved = false;
    const recording = batcher.record(row('a')).then(() => {
      resolved = true;
    });
    await tick();
    expect(resolved).toBe(false);
    database.statements[0]!.finish();
    await recording;
    expect(resolved).toBe(true);
  });

  test('an issuance the statement did not record (suspended client) fails alone, with ClientSuspendedError', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1 });
    const blocker = batcher.record(row('first'));
    const fine = batcher.record(row('a', 'good'));
    const refused = batcher.record(row('b', 'suspended'));
    database.statements[0]!.finish();
    await blocker;
    await tick();
    database.statements[1]!.finish(['a']);
    await expect(fine).resolves.toBeUndefined();
    await expect(refused).rejects.toEqual(new ClientSuspendedError('suspended'));
  });

  test('a failed statement fails every issuance in it, and the next statement still runs', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1 });
    const blocker = batcher.record(row('first'));
    const doomed = [batcher.record(row('a')), batcher.record(row('b'))];
    database.statements[0]!.fail(new Error('connection terminated'));
    await expect(blocker).rejects.toThrow('connection terminated');
    await tick();
    database.statements[1]!.fail(new Error('connection terminated'));
    for (const issuance of doomed) await expect(issuance).rejects.toThrow('connection terminated');

    const after = batcher.record(row('c'));
    await tick();
    database.statements[2]!.finish();
    await expect(after).resolves.toBeUndefined();
  });

  test('at most maxInFlight statements run at once, each with at most maxBatch issuances', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 2, maxBatch: 3 });
    const all = Array.from({ length: 10 }, (_, index) => batcher.record(row(`t${index}`)));
    expect(database.statements.map((statement) => statement.rows.length)).toEqual([1, 1]);
    database.statements[0]!.finish();
    database.statements[1]!.finish();
    await tick();
    expect(database.statements.slice(2).map((statement) => statement.rows.length)).toEqual([3, 3]);
    database.statements[2]!.finish();
    database.statements[3]!.finish();
    await tick();
    expect(database.statements.slice(4).map((statement) => statement.rows.length)).toEqual([2]);
    database.statements[4]!.finish();
    await Promise.all(all);
  });

  test('a refusal because of the subject token fails that issuance alone, with the statement\'s ParentRefusedError', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1 });
    const blocker = batcher.record(row('first'));
    const fine = batcher.record(row('a'));
    const refused = batcher.record(row('b'));
    database.statements[0]!.finish();
    await blocker;
    await tick();
    const refusal = new ParentRefusedError('b', 'ancestor_revoked', 'subject token p was revoked');
    database.statements[1]!.finish(['a'], () => ({ recorded: false, error: refusal }));
    await expect(fine).resolves.toBeUndefined();
    await expect(refused).rejects.toBe(refusal);
  });

  test('an issuance the statement does not answer for fails, never resolves as recorded', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write);
    const lost = batcher.record(row('a'));
    database.statements[0]!.finish([], () => undefined as unknown as IssuanceOutcome);
    await expect(lost).rejects.toThrow('the issuance statement did not answer for token a');
  });

  test('a full queue refuses the next issuance at once with IssuanceQueueError; room again once statements return', async () => {
    const database = scriptedDatabase();
    const batcher = issuanceBatcher(database.write, { maxInFlight: 1, queueLimit: 3 });
    const inFlight = batcher.record(row('sent'));
    const waiting = ['w1', 'w2', 'w3'].map((id) => batcher.record(row(id)));
    await expect(batcher.record(row('one-too-many'))).rejects.toEqual(new IssuanceQueueError('3 issuances already wait for the database (database.queueLimit)'));
    expect(database.statements).toHaveLength(1);

    database.statements[0]!.finish();
    await inFlight;
    await tick();
    // The three waiting ones went out together: the queue is empty again.
    expect(database.statements[1]!.rows.map((item) => item.token_id)).toEqual(['w1', 'w2', 'w3']);
    const next = batcher.record(row('next'));
    database.statements[1]!.finish();
    await Promise.all(waiting);
    await tick();
    database.statements[2]!.finish();
    await expect(next).resolves.toBeUndefined();
  });

  test('an issuance that waits queueTimeoutMs without being sent fails with IssuanceQueueError and is never sent', async () => {
    jest.useFakeTimers();
    try {
      const database = scriptedDatabase();
      const batcher = issuanceBatcher(database.write, { maxInFlight: 1, queueTimeoutMs: 500 });
      const stuck = batcher.record(row('stuck-in-flight'));
      const waiting = batcher.record(row('waiting'));
      const outcome = waiting.then(() => 'resolved', (error: unknown) => error);
      jest.advanceTimersByTime(499);
      await Promise.resolve();
      expect(database.statements).toHaveLength(1);
      jest.advanceTimersByTime(1);
      expect(await outcome).toEqual(new IssuanceQueueError('issuance waited 500 ms for the database without being sent'));

      // The statement in flight returns late: its issuance is settled by it, the expired one is not sent.
      database.statements[0]!.finish();
      await stuck;
      await Promise.resolve();
      expect(database.statements).toHaveLength(1);
    } finally {
      jest.useRealTimers();
    }
  });

  test('an issuance sent in time is not expired by its timer while its statement runs', async () => {
    jest.useFakeTimers();
    try {
      const database = scriptedDatabase();
      const batcher = issuanceBatcher(database.write, { queueTimeoutMs: 100 });
      const slow = batcher.record(row('slow-statement'));
      jest.advanceTimersByTime(10_000);
      database.statements[0]!.finish();
      await expect(slow).resolves.toBeUndefined();
    } finally {
      jest.useRealTimers();
    }
  });
});

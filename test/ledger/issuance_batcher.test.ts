import { ClientSuspendedError, type IssuanceRow } from '../../src/ledger/record_issuance.js';
import { issuanceBatcher } from '../../src/ledger/issuance_batcher.js';

/** The batcher alone, with a scripted statement: grouping, per-issuance outcomes, failure of a whole statement. */

const row = (tokenId: string, clientId = 'c'): IssuanceRow => ({
  type: 'token.issued', client_id: clientId, subject: null, resource: 'r', scope: '', token_id: tokenId, token_format: 'jwt', binding_method: 'bearer',
  binding_thumbprint: null, expires_at: '2030-01-01T00:00:00Z', parent_token_id: null, actor: null, request_id: 'q', source_address: null,
  instance_id: 'i', issued_at: '2030-01-01T00:00:00Z', act: null,
});

interface Statement {
  rows: IssuanceRow[];
  finish(recorded?: string[]): void;
  fail(error: Error): void;
}

function scriptedDatabase() {
  const statements: Statement[] = [];
  const write = (rows: IssuanceRow[]) => new Promise<Set<string>>((resolve, reject) => {
    statements.push({
      rows,
      finish: (recorded = rows.map((item) => item.token_id)) => resolve(new Set(recorded)),
      fail: reject,
    });
  });
  return { statements, write };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('issuance batcher', () => {
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
});

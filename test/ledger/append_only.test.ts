import type { Database } from '../../src/storage/database.js';
import { appendEvent } from '../../src/ledger/append_event.js';
import { LEDGER_EVENT_TYPES } from '../../src/ledger/events.js';
import { openTestDatabase } from '../support/database.js';

/** The database itself keeps the ledger append-only, whatever code or operator talks to it. */

let database: Database;
const facts = { requestId: 'test', sourceAddress: undefined, instanceId: 'test-instance' };

beforeAll(async () => {
  database = await openTestDatabase();
  for (const type of LEDGER_EVENT_TYPES) await appendEvent(database.knex, { type, clientId: 'c' }, facts);
});

afterAll(async () => {
  await database?.close();
});

describe('ledger_events is append-only', () => {
  test('every event type can be appended', async () => {
    const rows = await database.knex('ledger_events').select('type').orderBy('id');
    expect(rows.map((row) => row.type)).toEqual(LEDGER_EVENT_TYPES);
  });

  test.each([
    ['UPDATE', 'UPDATE ledger_events SET client_id = \'mallory\''],
    ['DELETE', 'DELETE FROM ledger_events'],
    ['TRUNCATE', 'TRUNCATE ledger_events'],
  ])('%s is refused by the database', async (operation, sql) => {
    await expect(database.knex.raw(sql)).rejects.toThrow(`ledger_events is append-only (${operation} refused)`);
    const rows = await database.knex('ledger_events').where({ client_id: 'c' });
    expect(rows).toHaveLength(LEDGER_EVENT_TYPES.length);
  });

  test('a refused change inside a transaction rolls the transaction back', async () => {
    await expect(database.knex.transaction(async (trx) => {
      await appendEvent(trx, { type: 'token.issued', clientId: 'in-trx' }, facts);
      await trx.raw('DELETE FROM ledger_events WHERE client_id = ?', ['c']);
    })).rejects.toThrow('append-only');
    expect(await database.knex('ledger_events').where({ client_id: 'in-trx' })).toHaveLength(0);
  });

  test('an unknown event type is refused', async () => {
    await expect(database.knex('ledger_events').insert({ type: 'token.forged' })).rejects.toThrow(/ledger_events_type_known/);
  });
});

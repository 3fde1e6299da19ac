import { spawn } from 'node:child_process';
import type { Knex } from 'knex';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { dumpEveryRow, rowCounts } from './table_dump.js';

/**
 * An in-memory database given back by `close()` is handed to the next `openDatabase({ memory: true })`
 * of the process only if nothing of its previous owner can be told from a new database
 * (src/storage/pglite_reuse.ts). Whether the database was reused shows in its transaction ids: a
 * new database starts at the snapshot's next id, a reused one that has written anything further on.
 */

/** The next transaction id, which only grows over a database's life. */
async function nextTransactionId(knex: Knex): Promise<number> {
  const result = await knex.raw<{ rows: { xid: string }[] }>('SELECT txid_current()::text AS xid');
  return Number(result.rows[0]!.xid);
}

/** What a database straight from the snapshot holds, and its first transaction id. */
let fresh: { xid: number; counts: Record<string, number>; rows: string; settings: string };

async function stateOf(database: Database): Promise<typeof fresh> {
  const { knex } = database;
  const settings = await knex.raw<{ rows: { s: string }[] }>("SELECT current_setting('statement_timeout') || ' ' || current_setting('search_path') AS s");
  return { xid: await nextTransactionId(knex), counts: await rowCounts(knex), rows: await dumpEveryRow(knex), settings: settings.rows[0]!.s };
}

/** A row in every table Tether writes, a sequence advanced, a session setting, a prepared statement, a listener. */
async function useEverything(database: Database, heard: string[]): Promise<void> {
  const { knex } = database;
  await knex('client_states').insert({ client_id: 'previous-owner' });
  await knex('issued_tokens').insert({
    token_id: 'previous-token', format: 'jwt', client_id: 'previous-owner', subject: 'previous-owner', resource: 'https://orders.test',
    scope: 'orders:read', binding_method: 'bearer', issued_at: new Date(), expires_at: new Date(Date.now() + 60_000),
  });
  await knex('ledger_events').insert({ type: 'token.issued', client_id: 'previous-owner', token_id: 'previous-token' });
  await knex('dpop_proofs').insert({ key_hash: 'previous-proof', expires_at: new Date(Date.now() + 60_000) });
  await knex.raw("SET statement_timeout = '1234ms'");
  await knex.raw('SET search_path = public, pg_temp');
  await knex.raw('PREPARE previous_statement AS SELECT 1');
  await knex.raw('CREATE TEMPORARY TABLE previous_scratch (x int)');
  const pglite = (knex.client as { pglite: { listen(channel: string, callback: (payload: string) => void): Promise<unknown> } }).pglite;
  await pglite.listen('previous_channel', (payload) => heard.push(payload));
}

beforeAll(async () => {
  const database = await openDatabase({ memory: true });
  // Nothing given back yet in this file: a new database.
  fresh = await stateOf(database);
  await database.close();
});

test('a used database given back is emptied and handed out again, indistinguishable from a new one', async () => {
  const heard: string[] = [];
  const first = await openDatabase({ memory: true });
  await useEverything(first, heard);
  const leaked = first.knex;
  await first.close();

  const second = await openDatabase({ memory: true });
  const state = await stateOf(second);
  // Reused: its transaction ids went on.
  expect(state.xid).toBeGreaterThan(fresh.xid);
  expect(state.counts).toEqual(fresh.counts);
  expect(state.rows).toEqual(fresh.rows);
  expect(state.settings).toEqual(fresh.settings);
  // The sequences start again: the first event of the new owner is event 1, as in a new database.
  const [{ id }] = await second.knex('ledger_events').insert({ type: 'client.suspended', client_id: 'next-owner' }).returning('id');
  expect(Number(id)).toBe(1);
  const prepared = await second.knex.raw<{ rows: unknown[] }>('SELECT name FROM pg_prepared_statements');
  expect(prepared.rows).toEqual([]);
  await expect(second.knex.raw('SELECT * FROM previous_scratch')).rejects.toThrow(/does not exist/);
  // The previous owner's listener hears nothing of the next owner's notifications.
  await second.knex.raw('LISTEN previous_channel');
  await second.knex.raw("NOTIFY previous_channel, 'for the next owner'");
  expect(heard).toEqual([]);
  // And what the previous owner kept is unusable.
  await expect(leaked.raw('SELECT 1')).rejects.toThrow();
  await second.close();
});

test('the append-only ledger of a database given back is emptied too: it is the database being discarded', async () => {
  const first = await openDatabase({ memory: true });
  await first.knex('ledger_events').insert({ type: 'token.issued', client_id: 'someone', token_id: 't' });
  await expect(first.knex.raw('TRUNCATE ledger_events')).rejects.toThrow(/append-only/);
  await first.close();
  const second = await openDatabase({ memory: true });
  expect(Number((await second.knex('ledger_events').count({ n: '*' }))[0]!.n)).toBe(0);
  // …and its append-only trigger is in force for the next owner.
  await second.knex('ledger_events').insert({ type: 'token.issued', client_id: 'someone', token_id: 't' });
  await expect(second.knex('ledger_events').del()).rejects.toThrow(/append-only/);
  await second.close();
});

test.each([
  ['a table created', (knex: Knex) => knex.raw('CREATE TABLE previous_table (x int)')],
  ['a column added', (knex: Knex) => knex.raw('ALTER TABLE client_states ADD COLUMN previous text')],
  ['a table dropped and made again', async (knex: Knex) => {
    await knex.raw('DROP TABLE federated_assertions');
    await knex.raw('CREATE TABLE federated_assertions (key_hash text primary key, expires_at timestamptz)');
  }],
  ['statistics gathered', (knex: Knex) => knex.raw('ANALYZE client_states')],
  ['a migration undone', (knex: Knex) => knex.raw('DELETE FROM knex_migrations WHERE id = (SELECT max(id) FROM knex_migrations)')],
  ['a role created', (knex: Knex) => knex.raw('CREATE ROLE previous_role')],
  ['a transaction left open', (knex: Knex) => knex.raw('BEGIN')],
])('a database given back with %s is closed, not reused', async (_change, change) => {
  const first = await openDatabase({ memory: true });
  await change(first.knex);
  await first.close();
  const second = await openDatabase({ memory: true });
  // New: the snapshot's first transaction id again.
  expect(await nextTransactionId(second.knex)).toBe(fresh.xid);
  expect(await rowCounts(second.knex)).toEqual(fresh.counts);
  await second.close();
});

test('two databases open at once are two databases; both given back, both are reused', async () => {
  const [a, b] = [await openDatabase({ memory: true }), await openDatabase({ memory: true })];
  await a.knex('client_states').insert({ client_id: 'only-in-a' });
  expect(await b.knex('client_states').where({ client_id: 'only-in-a' })).toEqual([]);
  // A write of its own, so that b too has used a transaction id by which its reuse shows.
  await b.knex('client_states').insert({ client_id: 'only-in-b' });
  expect(await a.knex('client_states').where({ client_id: 'only-in-b' })).toEqual([]);
  await a.close();
  await b.close();
  const [c, d] = [await openDatabase({ memory: true }), await openDatabase({ memory: true })];
  for (const database of [c, d]) {
    expect(await nextTransactionId(database.knex)).toBeGreaterThan(fresh.xid);
    expect(await rowCounts(database.knex)).toEqual(fresh.counts);
  }
  await c.close();
  await d.close();
});

test('a database no one takes within a second is closed: the next is a new one', async () => {
  const first = await openDatabase({ memory: true });
  await first.knex('client_states').insert({ client_id: 'waited-too-long' });
  await first.close();
  // Timers fire in the order they fall due: the idle database's expiry (1 s) comes before this one.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const second = await openDatabase({ memory: true });
  expect(await nextTransactionId(second.knex)).toBe(fresh.xid);
  await second.close();
});

test('a process whose last database was given back exits on its own', async () => {
  const script = [
    `import { openDatabase } from ${JSON.stringify(new URL('../../src/storage/database.ts', import.meta.url).href)};`,
    'const database = await openDatabase({ memory: true });',
    "await database.knex('client_states').insert({ client_id: 'last' });",
    'await database.close();',
  ].join('\n');
  // Bounded: a process kept alive by the idle database is killed at 30 s, and the test sees its signal.
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore', timeout: 30_000 });
    child.on('error', reject);
    child.on('exit', (exitCode, exitSignal) => resolve({ code: exitCode, signal: exitSignal }));
  });
  expect({ code, signal }).toEqual({ code: 0, signal: null });
}, 40_000);

test('16 databases given back at once: at most two are kept, the rest closed', async () => {
  const opened = await Promise.all(Array.from({ length: 16 }, () => openDatabase({ memory: true })));
  // A write in each, so that a reused one shows by its transaction id.
  await Promise.all(opened.map((database, index) => database.knex('client_states').insert({ client_id: `burst-${index}` })));
  await Promise.all(opened.map((database) => database.close()));
  const next = await Promise.all(Array.from({ length: 16 }, () => openDatabase({ memory: true })));
  const reused = [];
  for (const database of next) {
    if ((await nextTransactionId(database.knex)) > fresh.xid) reused.push(database);
    expect(await rowCounts(database.knex)).toEqual(fresh.counts);
  }
  expect(reused.length).toBe(2);
  await Promise.all(next.map((database) => database.close()));
}, 60_000);

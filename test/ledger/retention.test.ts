import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { ledgerPrune, pruneCutoffOf } from '../../src/cli/ledger_commands.js';
import { CommandError, type CommandContext } from '../../src/cli/inventory_output.js';
import { parseConfig } from '../../src/config/load_config.js';
import { appendEvent } from '../../src/ledger/append_event.js';
import { LEDGER_EVENT_TYPES, PRUNABLE_EVENT_TYPES } from '../../src/ledger/events.js';
import { pruneEvents } from '../../src/ledger/prune_events.js';
import type { Database } from '../../src/storage/database.js';
import { Captured, runTetherToEnd } from '../cli/cli_support.js';
import { openTestDatabase } from '../support/database.js';

/**
 * Issue 12 item 6, retention: rejection and introspection events may be deleted after a retention
 * period by `tether ledger prune`, and only by it; every other event stays append-only, enforced by
 * the database (migrations/0004_prunable_ledger_events.js).
 */

let database: Database;
let knex: Knex;
const facts = { requestId: 'retention-test', sourceAddress: undefined, instanceId: 'test-instance' };
const cause = { actor: 'cli:tester@test-host', reason: 'retention test' };
const OLD = new Date('2026-01-01T00:00:00Z');
const CUTOFF = new Date('2026-06-01T00:00:00Z');

/** One event of every type dated `OLD`, and one of every type dated now. */
async function seed(): Promise<void> {
  for (const type of LEDGER_EVENT_TYPES) {
    await appendEvent(knex, { type, clientId: 'c', details: { seeded: 'now' } }, facts);
    await appendEvent(knex, { type, clientId: 'c', details: { seeded: 'old' } }, facts);
  }
  // occurred_at defaults to now(); the old copies are backdated by inserting them directly.
  await knex.raw('ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_change');
  await knex.raw("UPDATE ledger_events SET occurred_at = ? WHERE details->>'seeded' = 'old'", [OLD.toISOString()]);
  await knex.raw('ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_no_change');
}

const byType = async () => Object.fromEntries(
  ((await knex('ledger_events').select('type').count({ n: '*' }).groupBy('type')) as { type: string; n: string | number }[])
    .map((row) => [row.type, Number(row.n)]),
);

beforeEach(async () => {
  database = await openTestDatabase();
  knex = database.knex;
  await seed();
});

afterEach(async () => {
  await database?.close();
});

describe('the database keeps everything but rejections and introspections append-only', () => {
  test.each([
    ['a plain DELETE of a rejection', "DELETE FROM ledger_events WHERE type = 'request.rejected'", 'DELETE'],
    ['UPDATE, even inside a prune transaction', "UPDATE ledger_events SET client_id = 'mallory' WHERE type = 'request.rejected'", 'UPDATE'],
    ['TRUNCATE, even inside a prune transaction', 'TRUNCATE ledger_events', 'TRUNCATE'],
    ...LEDGER_EVENT_TYPES.filter((type) => !(PRUNABLE_EVENT_TYPES as readonly string[]).includes(type)).map((type) => [
      `DELETE of a ${type} event inside a prune transaction`, `DELETE FROM ledger_events WHERE type = '${type}'`, 'DELETE',
    ]),
  ])('%s is refused', async (label, sql, operation) => {
    const before = await byType();
    const inPrune = label.includes('prune transaction');
    await expect(knex.transaction(async (trx) => {
      if (inPrune) await trx.raw("SELECT set_config('tether.ledger_prune', 'on', true)");
      await trx.raw(sql);
    })).rejects.toThrow(`ledger_events is append-only (${operation} refused)`);
    expect(await byType()).toEqual(before);
  });

  test('the setting is local to the prune\'s transaction: afterwards a DELETE is refused again', async () => {
    await knex.transaction(async (trx) => {
      await trx.raw("SELECT set_config('tether.ledger_prune', 'on', true)");
      await trx.raw("DELETE FROM ledger_events WHERE type = 'token.introspected' AND details->>'seeded' = 'old'");
    });
    await expect(knex.raw("DELETE FROM ledger_events WHERE type = 'token.introspected'")).rejects.toThrow('append-only (DELETE refused)');
  });
});

describe('pruneEvents', () => {
  test('deletes only rejection and introspection events before the cut-off, in batches, and records that it did', async () => {
    const counts = await pruneEvents(knex, { before: CUTOFF, batchSize: 1 }, cause, facts);
    expect(counts).toEqual({ 'request.rejected': 1, 'token.introspected': 1 });
    const remaining = await knex('ledger_events').select('type', knex.raw("details->>'seeded' AS seeded")).whereRaw("details->>'seeded' IS NOT NULL");
    const old = remaining.filter((row) => row.seeded === 'old').map((row) => row.type).sort();
    expect(old).toEqual(LEDGER_EVENT_TYPES.filter((type) => !(PRUNABLE_EVENT_TYPES as readonly string[]).includes(type)).sort());
    expect(remaining.filter((row) => row.seeded === 'now')).toHaveLength(LEDGER_EVENT_TYPES.length);
    const [pruned] = await knex('ledger_events').where({ type: 'ledger.pruned' }).whereRaw("details->>'seeded' IS NULL");
    expect(pruned).toMatchObject({
      actor: cause.actor, request_id: facts.requestId,
      details: { reason: cause.reason, before: CUTOFF.toISOString(), deleted: { 'request.rejected': 1, 'token.introspected': 1 } },
    });
    // A second prune finds nothing, and says so in the ledger too.
    expect(await pruneEvents(knex, { before: CUTOFF }, cause, facts)).toEqual({ 'request.rejected': 0, 'token.introspected': 0 });
  });

  test('one type only; a dry run deletes and records nothing', async () => {
    const before = await byType();
    expect(await pruneEvents(knex, { before: CUTOFF, dryRun: true }, cause, facts)).toEqual({ 'request.rejected': 1, 'token.introspected': 1 });
    expect(await byType()).toEqual(before);
    expect(await pruneEvents(knex, { before: CUTOFF, types: ['token.introspected'] }, cause, facts)).toEqual({ 'request.rejected': 0, 'token.introspected': 1 });
    expect(await byType()).toEqual({ ...before, 'token.introspected': 1, 'ledger.pruned': before['ledger.pruned']! + 1 });
  });
});

describe('tether ledger prune', () => {
  const contextOf = (out: Captured): CommandContext => ({
    knex,
    config: parseConfig({
      issuer: 'https://a.example', resources: [{ uri: 'https://api.example' }],
      clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef0123' } }],
    }),
    out,
    actor: cause.actor,
    facts,
  });

  test('prints what it pruned', async () => {
    const out = new Captured();
    await ledgerPrune(contextOf(out), { before: '2026-06-01' });
    expect(out.take()).toBe([
      'pruned 1 request.rejected and 1 token.introspected events before 2026-06-01T00:00:00.000Z',
      'issuance, exchange, revocation and client events are never pruned',
      '',
    ].join('\n'));
    await ledgerPrune(contextOf(out), { before: '30d', json: true, dryRun: true, now: new Date('2026-07-01T00:00:00Z') });
    expect(JSON.parse(out.take())).toEqual({ before: '2026-06-01T00:00:00.000Z', dry_run: true, would_delete: { 'request.rejected': 0, 'token.introspected': 0 } });
  });

  test.each([
    ['yesterday', /--before must be an ISO 8601 date/],
    ['2999-01-01', /is in the future/],
  ])('--before %s is refused', async (before, message) => {
    const counts = await byType();
    await expect(ledgerPrune(contextOf(new Captured()), { before })).rejects.toThrow(message);
    expect(await byType()).toEqual(counts);
  });

  test('--type token.issued is refused: no other event is ever pruned', async () => {
    const before = await byType();
    await expect(ledgerPrune(contextOf(new Captured()), { before: '2026-06-01', type: 'token.issued' })).rejects.toThrow(CommandError);
    expect(await byType()).toEqual(before);
  });

  test('ages are relative to now', () => {
    const now = new Date('2026-07-01T12:00:00Z');
    expect(pruneCutoffOf('30d', now).toISOString()).toBe('2026-06-01T12:00:00.000Z');
    expect(pruneCutoffOf('12h', now).toISOString()).toBe('2026-07-01T00:00:00.000Z');
    expect(pruneCutoffOf('2026-06-01T08:00:00Z', now).toISOString()).toBe('2026-06-01T08:00:00.000Z');
  });
});

describe('the real command line', () => {
  test('tether ledger prune on the embedded database; --type token.issued is refused as a usage error (exit code 2)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-prune-'));
    try {
      const env = { DATABASE_URL: undefined, TETHER_KEY_ENCRYPTION_SECRET: undefined };
      const pruned = await runTetherToEnd(['ledger', 'prune', '--before', '2026-01-01', '--json'], env, dir);
      expect([pruned.code, pruned.stderr]).toEqual([0, '']);
      expect(JSON.parse(pruned.stdout)).toEqual({ before: '2026-01-01T00:00:00.000Z', dry_run: false, deleted: { 'request.rejected': 0, 'token.introspected': 0 } });
      const refused = await runTetherToEnd(['ledger', 'prune', '--before', '2026-01-01', '--type', 'token.issued'], env, dir);
      expect([refused.code, refused.stderr]).toEqual([2, 'tether: --type must be one of request.rejected, token.introspected (no other event is ever pruned)\n']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

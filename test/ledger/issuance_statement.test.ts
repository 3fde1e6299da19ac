import type { Knex } from 'knex';
import { ensureClientStates } from '../../src/ledger/client_states.js';
import { MAX_LINEAGE_DEPTH } from '../../src/ledger/lineage.js';
import { ClientSuspendedError, issuanceStatementFor, ParentRefusedError, recordIssuances, type IssuanceOutcome, type IssuanceRow } from '../../src/ledger/record_issuance.js';
import { revokeTokens } from '../../src/ledger/revoke_tokens.js';
import type { Database } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { scansOfPrepared } from '../support/plan_scans.js';

/**
 * The issuance statement on its own (record_issuance.ts), on the run's database: what it refuses
 * because of the subject token, that a refusal writes nothing, and (PostgreSQL) that it waits for a
 * revocation holding the lineage's root and then sees the revocation.
 */

let database: Database & { url?: string };
let knex: Knex;

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
  await ensureClientStates(knex, ['worker', 'orders-api', 'gone']);
  await knex('client_states').where({ client_id: 'gone' }).update({ suspended: true });
});

afterAll(() => database?.close());

let sequence = 0;
const id = (prefix: string) => `${prefix}-${(sequence += 1)}`;

function row(tokenId: string, parent: string | null, clientId = 'orders-api'): IssuanceRow {
  return {
    type: parent ? 'token.exchanged' : 'token.issued', client_id: clientId, subject: null, resource: 'https://invoices.test', scope: 'orders:read',
    token_id: tokenId, token_format: 'jwt', binding_method: 'bearer', binding_thumbprint: null, expires_at: new Date(Date.now() + 300_000).toISOString(),
    parent_token_id: parent, actor: parent ? 'orders-api' : null, request_id: 'statement-test', source_address: null, instance_id: 'test',
    issued_at: new Date().toISOString(), act: null, external_issuer: null, external_subject: null, external_token_id: null,
    proof_key_hash: null, proof_expires_at: null,
  };
}

/** A recorded chain of `length` tokens (root first), as issued by worker then exchanged; returns their ids. */
async function chain(length: number): Promise<string[]> {
  const ids = Array.from({ length }, () => id('t'));
  const rows = ids.map((tokenId, index) => ({
    token_id: tokenId, format: 'jwt', client_id: 'worker', subject: 'worker', resource: 'https://orders.test', scope: 'orders:read',
    binding_method: 'bearer', issued_at: new Date(), expires_at: new Date(Date.now() + 300_000), parent_token_id: index === 0 ? null : ids[index - 1],
  }));
  await knex('issued_tokens').insert(rows);
  return ids;
}

/** An outcome as plain data: 'recorded', or the refusal's class, kind and private detail. */
function verdict(outcome: IssuanceOutcome | undefined): unknown {
  if (!outcome) return 'no answer';
  if (outcome.recorded) return 'recorded';
  const { error } = outcome;
  return error instanceof ParentRefusedError
    ? { error: error.name, tokenId: error.tokenId, refusal: error.refusal, detail: error.message }
    : { error: error.name, clientId: (error as ClientSuspendedError).clientId };
}

async function writtenFor(tokenId: string): Promise<{ events: number; rows: number }> {
  const [events, rows] = await Promise.all([
    knex('ledger_events').where({ token_id: tokenId }).count({ count: '*' }),
    knex('issued_tokens').where({ token_id: tokenId }).count({ count: '*' }),
  ]);
  return { events: Number(events[0]!.count), rows: Number(rows[0]!.count) };
}

test('a child of a live lineage is recorded, with the subject of its parent', async () => {
  const [, parent] = await chain(2);
  const child = id('c');
  const outcomes = await recordIssuances(knex, [row(child, parent!)]);
  expect(verdict(outcomes.get(child))).toBe('recorded');
  expect(await knex('issued_tokens').where({ token_id: child }).first()).toMatchObject({ parent_token_id: parent, subject: 'worker', client_id: 'orders-api' });
});

test('each issuance of a batch gets its own verdict; a refused one writes nothing', async () => {
  const [revokedRoot, underRevoked] = await chain(2);
  const [liveParent] = await chain(1);
  await knex('issued_tokens').where({ token_id: revokedRoot }).update({ revoked_at: new Date() });
  const [revokedParent] = await chain(1);
  await knex('issued_tokens').where({ token_id: revokedParent }).update({ revoked_at: new Date() });

  const fine = id('fine');
  const ofRevokedParent = id('of-revoked');
  const ofRevokedAncestor = id('of-revoked-ancestor');
  const ofUnknown = id('of-unknown');
  const ofSuspended = id('of-suspended');
  const outcomes = await recordIssuances(knex, [
    row(fine, liveParent!),
    row(ofRevokedParent, revokedParent!),
    row(ofRevokedAncestor, underRevoked!),
    row(ofUnknown, 'no-such-token'),
    row(ofSuspended, liveParent!, 'gone'),
  ]);

  expect(verdict(outcomes.get(fine))).toBe('recorded');
  expect(verdict(outcomes.get(ofRevokedParent))).toEqual({ error: 'ParentRefusedError', tokenId: ofRevokedParent, refusal: 'ancestor_revoked', detail: `subject token ${revokedParent} was revoked` });
  expect(verdict(outcomes.get(ofRevokedAncestor))).toEqual({ error: 'ParentRefusedError', tokenId: ofRevokedAncestor, refusal: 'ancestor_revoked', detail: `subject token ${underRevoked} descends from revoked token ${revokedRoot}` });
  expect(verdict(outcomes.get(ofUnknown))).toEqual({ error: 'ParentRefusedError', tokenId: ofUnknown, refusal: 'parent_unknown', detail: 'subject token no-such-token has no ledger record' });
  expect(verdict(outcomes.get(ofSuspended))).toEqual({ error: 'ClientSuspendedError', clientId: 'gone' });

  for (const refused of [ofRevokedParent, ofRevokedAncestor, ofUnknown, ofSuspended]) expect(await writtenFor(refused)).toEqual({ events: 0, rows: 0 });
  expect(await writtenFor(fine)).toEqual({ events: 1, rows: 1 });
});

test(`a lineage grows to ${MAX_LINEAGE_DEPTH} ancestors and no deeper`, async () => {
  const ids = await chain(MAX_LINEAGE_DEPTH + 1);
  const deepest = id('deepest');
  const tooDeep = id('too-deep');
  // A child of the token at index MAX-1 has MAX ancestors: allowed. A child of the last one would have MAX + 1.
  const outcomes = await recordIssuances(knex, [row(deepest, ids[MAX_LINEAGE_DEPTH - 1]!), row(tooDeep, ids[MAX_LINEAGE_DEPTH]!)]);
  expect(verdict(outcomes.get(deepest))).toBe('recorded');
  expect(verdict(outcomes.get(tooDeep))).toEqual({ error: 'ParentRefusedError', tokenId: tooDeep, refusal: 'lineage_too_deep', detail: `subject token ${ids[MAX_LINEAGE_DEPTH]} already has ${MAX_LINEAGE_DEPTH} ancestors` });

  // The deepest lineage is revoked whole from its root: the walk down reaches every level.
  const revoked = await revokeTokens(knex, { tokenIds: [ids[0]!] }, { actor: 'test', reason: 'deep' }, { requestId: 'r', sourceAddress: undefined, instanceId: 'test' });
  expect(revoked.map((token) => token.tokenId).sort()).toEqual([...ids, deepest].sort());
});

/**
 * The plan the session keeps for a statement (a generic plan, as PostgreSQL settles on for a
 * prepared statement after its first executions), made while issued_tokens is known to hold a handful
 * of rows: the state in which a sequential scan of it is the cheapest plan, and stays the plan as the
 * table grows (on PGlite no autovacuum replans it).
 */
async function sessionPlanWithSmallStatistics(text: string): Promise<string[]> {
  await chain(3);
  return knex.transaction(async (trx) => {
    await trx.raw('ANALYZE issued_tokens');
    await trx.raw('SET LOCAL plan_cache_mode = force_generic_plan');
    await trx.raw(`PREPARE plan_probe (jsonb) AS ${text.replace('$1::jsonb', '$1')}`);
    try {
      return await scansOfPrepared(trx, 'plan_probe');
    } finally {
      await trx.raw('DEALLOCATE plan_probe');
    }
  });
}

test.each([
  ['client_credentials', { parent_token_id: null, proof_key_hash: null }],
  ['DPoP-bound', { parent_token_id: null, proof_key_hash: 'h' }],
])('a batch without exchanged tokens (%s) reads no issued_tokens row, whatever the statistics say', async (_kind, batch) => {
  const scans = await sessionPlanWithSmallStatistics(issuanceStatementFor([batch]).text);
  expect(scans.filter((scan) => scan.includes('issued_tokens'))).toEqual([]);
  // The statement's reads are the client's state (and the proof's row): neither grows with the tokens issued.
  expect(scans.every((scan) => /on (client_states|dpop_proofs)$/.test(scan))).toBe(true);
});

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? test : test.skip)('PostgreSQL: an issuance waits for a revocation that holds the lineage root, then reads the parent as revoked', async () => {
  const [root, parent] = await chain(2);
  const child = id('waits');
  let revoking!: () => void;
  const lockHeld = new Promise<void>((resolve) => {
    revoking = resolve;
  });
  let commit!: () => void;
  const committed = new Promise<void>((resolve) => {
    commit = resolve;
  });
  // What revoke_tokens.ts does, held open in the middle: root locked, parent marked, not committed.
  const revocation = knex.transaction(async (trx) => {
    await trx.raw('SELECT token_id FROM issued_tokens WHERE token_id = ? FOR UPDATE', [root!]);
    await trx('issued_tokens').where({ token_id: parent }).update({ revoked_at: new Date() });
    revoking();
    await committed;
  });
  await lockHeld;
  let answered = false;
  const issuance = recordIssuances(knex, [row(child, parent!)]).finally(() => {
    answered = true;
  });
  // The statement started after the revocation's snapshot-visible changes, yet must not pass it.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const answeredBeforeCommit = answered;
  commit();
  await revocation;
  const outcomes = await issuance;
  expect(answeredBeforeCommit).toBe(false);
  expect(verdict(outcomes.get(child))).toEqual({ error: 'ParentRefusedError', tokenId: child, refusal: 'ancestor_revoked', detail: `subject token ${parent} was revoked` });
  expect(await writtenFor(child)).toEqual({ events: 0, rows: 0 });
});

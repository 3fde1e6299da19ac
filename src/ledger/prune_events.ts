import type { Knex } from 'knex';
import { appendEvent } from './append_event.js';
import { PRUNABLE_EVENT_TYPES, type Cause, type PrunableEventType, type RequestFacts } from './events.js';
import { rowsOf } from './rows.js';

/**
 * Retention (docs/ledger.md#retention): deletes rejection and introspection events older than a
 * date, in batches of short transactions, and records that it did (`ledger.pruned`). Issuance,
 * exchange, revocation and client events are never touched: the query names only the prunable
 * types, and the database's trigger (migrations/0004) refuses to delete any other row, and any row
 * at all outside a transaction that has set `tether.ledger_prune`.
 */

export interface PruneOptions {
  /** Events that occurred strictly before this are deleted. */
  before: Date;
  /** Default: both prunable types. */
  types?: readonly PrunableEventType[];
  /** Rows per transaction (default 5000), so a prune never holds long locks. */
  batchSize?: number;
  /** Count only; delete nothing and record nothing. */
  dryRun?: boolean;
}

export type PruneCounts = Record<PrunableEventType, number>;

function zeroCounts(): PruneCounts {
  return Object.fromEntries(PRUNABLE_EVENT_TYPES.map((type) => [type, 0])) as PruneCounts;
}

export async function countPrunable(knex: Knex, before: Date, types: readonly PrunableEventType[]): Promise<PruneCounts> {
  const counts = zeroCounts();
  const rows = await knex('ledger_events').select('type').count({ n: '*' }).whereIn('type', [...types]).andWhere('occurred_at', '<', before).groupBy('type');
  for (const row of rows as { type: PrunableEventType; n: string | number }[]) counts[row.type] = Number(row.n);
  return counts;
}

async function deleteBatch(knex: Knex, before: Date, types: readonly PrunableEventType[], batchSize: number): Promise<PrunableEventType[]> {
  return knex.transaction(async (trx) => {
    // The trigger lets this transaction, and only it, delete prunable rows.
    await trx.raw("SELECT set_config('tether.ledger_prune', 'on', true)");
    const result = await trx.raw(
      `DELETE FROM ledger_events WHERE id IN (
         SELECT id FROM ledger_events WHERE type IN (${types.map(() => '?').join(', ')}) AND occurred_at < ?::timestamptz ORDER BY id LIMIT ?)
       RETURNING type`,
      [...types, before.toISOString(), batchSize],
    );
    return (rowsOf(result) as { type: PrunableEventType }[]).map((row) => row.type);
  });
}

/** Deletes the prunable events before `options.before`; returns how many of each type. */
export async function pruneEvents(knex: Knex, options: PruneOptions, cause: Cause, facts: RequestFacts): Promise<PruneCounts> {
  const types = options.types ?? PRUNABLE_EVENT_TYPES;
  if (options.dryRun) return countPrunable(knex, options.before, types);
  const batchSize = options.batchSize ?? 5000;
  const counts = zeroCounts();
  for (;;) {
    const deleted = await deleteBatch(knex, options.before, types, batchSize);
    for (const type of deleted) counts[type] += 1;
    if (deleted.length < batchSize) break;
  }
  await appendEvent(knex, {
    type: 'ledger.pruned',
    actor: cause.actor,
    details: { reason: cause.reason, before: options.before.toISOString(), deleted: counts },
  }, facts);
  return counts;
}

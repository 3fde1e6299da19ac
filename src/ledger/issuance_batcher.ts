import { statementBatcher, type QueueRefusal, type StatementBatcherOptions } from '../storage/statement_batcher.js';
import type { IssuanceOutcome, IssuanceRow } from './record_issuance.js';

/**
 * Groups concurrent issuances into shared issuance statements (storage/statement_batcher.ts: the
 * first is written at once, those arriving meanwhile share the next statement, every wait bounded).
 * Each issuance still resolves only when the statement that carries it has committed; if that
 * statement fails, every issuance in it fails (and nothing of it was recorded: it is one statement).
 * One statement in flight by default: a second one halves the batch each commit carries and
 * PostgreSQL pays its per-statement cost twice as often (docs/benchmarks.md).
 */
export type IssuanceBatcherOptions = StatementBatcherOptions;

/** The issuance was not sent to the database: the queue was full, or it waited too long. */
export class IssuanceQueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IssuanceQueueError';
  }
}

export interface IssuanceBatcher {
  /** Resolves once the issuance is committed; rejects with the statement's refusal or error, or IssuanceQueueError. */
  record(row: IssuanceRow): Promise<void>;
  /** Issuances waiting for a statement, and statements running (observability/metrics.ts). */
  depth(): { waiting: number; inFlight: number };
}

function queueError(reason: QueueRefusal): IssuanceQueueError {
  return new IssuanceQueueError(reason.kind === 'queue_full'
    ? `${reason.waiting} issuances already wait for the database (database.queueLimit)`
    : `issuance waited ${reason.waitedMs} ms for the database without being sent`);
}

export function issuanceBatcher(write: (rows: IssuanceRow[]) => Promise<Map<string, IssuanceOutcome>>, options: IssuanceBatcherOptions = {}): IssuanceBatcher {
  const batcher = statementBatcher<IssuanceRow, void>(async (rows) => {
    const outcomes = await write(rows);
    return rows.map((row) => {
      const outcome = outcomes.get(row.token_id);
      if (outcome?.recorded) return { ok: true, value: undefined };
      return { ok: false, error: outcome?.error ?? new Error(`the issuance statement did not answer for token ${row.token_id}`) };
    });
  }, queueError, options);
  return { record: (row) => batcher.submit(row), depth: () => batcher.depth() };
}

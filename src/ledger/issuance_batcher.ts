import type { IssuanceOutcome, IssuanceRow } from './record_issuance.js';

/**
 * Groups concurrent issuances into shared statements, the way a database groups commits: the first
 * issuance is written at once; those that arrive while `maxInFlight` statements are running wait and
 * go together in the next one. Nothing waits on a timer, so a lone request pays no extra latency,
 * and under load one round trip and one commit serve many tokens.
 *
 * Each issuance still resolves only when the statement that carries it has committed; if that
 * statement fails, every issuance in it fails (and nothing of it was recorded: it is one statement).
 *
 * The wait is bounded (DESIGN: every wait on the database is bounded). At most `queueLimit`
 * issuances wait for a statement; one more is refused at once. An issuance that waited `queueTimeoutMs`
 * without being sent is refused. Both refusals are IssuanceQueueError, which the token path answers
 * with 503: when statements stop coming back (a frozen database), requests fail within the timeout
 * instead of piling up behind the ones in flight, and those in flight are bounded by the database's
 * own statement timeout.
 */

export interface IssuanceBatcherOptions {
  /** Statements running at once (default 2). */
  maxInFlight?: number;
  /** Issuances per statement at most (default 64). */
  maxBatch?: number;
  /** Issuances waiting for a statement at most (default 1000). */
  queueLimit?: number;
  /** Longest wait for a statement, in milliseconds (default 3000). */
  queueTimeoutMs?: number;
}

/** The issuance was not sent to the database: the queue was full, or it waited too long. */
export class IssuanceQueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IssuanceQueueError';
  }
}

interface Pending {
  row: IssuanceRow;
  resolve(): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

export interface IssuanceBatcher {
  /** Resolves once the issuance is committed; rejects with the statement's refusal or error, or IssuanceQueueError. */
  record(row: IssuanceRow): Promise<void>;
  /** Issuances waiting for a statement, and statements running (observability/metrics.ts). */
  depth(): { waiting: number; inFlight: number };
}

export function issuanceBatcher(write: (rows: IssuanceRow[]) => Promise<Map<string, IssuanceOutcome>>, options: IssuanceBatcherOptions = {}): IssuanceBatcher {
  const maxInFlight = options.maxInFlight ?? 2;
  const maxBatch = options.maxBatch ?? 64;
  const queueLimit = options.queueLimit ?? 1000;
  const queueTimeoutMs = options.queueTimeoutMs ?? 3000;
  const queue: Pending[] = [];
  let inFlight = 0;

  function settle(batch: Pending[], outcomes: Map<string, IssuanceOutcome>): void {
    for (const pending of batch) {
      const outcome = outcomes.get(pending.row.token_id);
      if (outcome?.recorded) pending.resolve();
      else pending.reject(outcome?.error ?? new Error(`the issuance statement did not answer for token ${pending.row.token_id}`));
    }
  }

  function flush(): void {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      for (const pending of batch) clearTimeout(pending.timer);
      inFlight += 1;
      write(batch.map((pending) => pending.row))
        .then((outcomes) => settle(batch, outcomes), (error: unknown) => batch.forEach((pending) => pending.reject(error)))
        .finally(() => {
          inFlight -= 1;
          flush();
        });
    }
  }

  function expire(pending: Pending): void {
    const index = queue.indexOf(pending);
    if (index === -1) return;
    queue.splice(index, 1);
    pending.reject(new IssuanceQueueError(`issuance waited ${queueTimeoutMs} ms for the database without being sent`));
  }

  return {
    record(row) {
      if (queue.length >= queueLimit) {
        return Promise.reject(new IssuanceQueueError(`${queue.length} issuances already wait for the database (database.queueLimit)`));
      }
      return new Promise<void>((resolve, reject) => {
        const pending: Pending = { row, resolve, reject, timer: undefined as unknown as NodeJS.Timeout };
        pending.timer = setTimeout(() => expire(pending), queueTimeoutMs).unref();
        queue.push(pending);
        flush();
      });
    },
    depth: () => ({ waiting: queue.length, inFlight }),
  };
}

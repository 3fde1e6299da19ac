import { ClientSuspendedError, type IssuanceRow } from './record_issuance.js';

/**
 * Groups concurrent issuances into shared statements, the way a database groups commits: the first
 * issuance is written at once; those that arrive while `maxInFlight` statements are running wait and
 * go together in the next one. Nothing waits on a timer, so a lone request pays no extra latency,
 * and under load one round trip and one commit serve many tokens.
 *
 * Each issuance still resolves only when the statement that carries it has committed; if that
 * statement fails, every issuance in it fails (and nothing of it was recorded: it is one statement).
 */

export interface IssuanceBatcherOptions {
  /** Statements running at once (default 2). */
  maxInFlight?: number;
  /** Issuances per statement at most (default 64). */
  maxBatch?: number;
}

interface Pending {
  row: IssuanceRow;
  resolve(): void;
  reject(error: unknown): void;
}

export interface IssuanceBatcher {
  /** Resolves once the issuance is committed; rejects with ClientSuspendedError or the statement's error. */
  record(row: IssuanceRow): Promise<void>;
}

export function issuanceBatcher(write: (rows: IssuanceRow[]) => Promise<Set<string>>, options: IssuanceBatcherOptions = {}): IssuanceBatcher {
  const maxInFlight = options.maxInFlight ?? 2;
  const maxBatch = options.maxBatch ?? 64;
  const queue: Pending[] = [];
  let inFlight = 0;

  function settle(batch: Pending[], recorded: Set<string>): void {
    for (const pending of batch) {
      if (recorded.has(pending.row.token_id)) pending.resolve();
      else pending.reject(new ClientSuspendedError(pending.row.client_id));
    }
  }

  function flush(): void {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      inFlight += 1;
      write(batch.map((pending) => pending.row))
        .then((recorded) => settle(batch, recorded), (error: unknown) => batch.forEach((pending) => pending.reject(error)))
        .finally(() => {
          inFlight -= 1;
          flush();
        });
    }
  }

  return {
    record(row) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ row, resolve, reject });
        flush();
      });
    },
  };
}

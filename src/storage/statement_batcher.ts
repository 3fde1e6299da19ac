/**
 * Groups concurrent requests for one statement into shared statements, the way a database groups
 * commits: the first request is written at once; those that arrive while `maxInFlight` statements
 * are running wait and go together in the next one. Nothing waits on a timer, so a lone request pays
 * no extra latency, and under load one round trip and one commit serve many requests.
 *
 * Each request resolves only when the statement that carries it has answered; if that statement
 * fails, every request in it fails (and nothing of it was written: it is one statement).
 *
 * The wait is bounded (DESIGN: every wait on the database is bounded). At most `queueLimit` requests
 * wait for a statement; one more is refused at once. A request that waited `queueTimeoutMs` without
 * being sent is refused. Both refusals are made by `refuse`, which the token path answers with 503:
 * when statements stop coming back (a frozen database), requests fail within the timeout instead of
 * piling up behind the ones in flight, and those in flight are bounded by the database's own
 * statement timeout.
 */
export interface StatementBatcherOptions {
  /** Statements running at once (default 1: docs/benchmarks.md, "One issuance statement in flight"). */
  maxInFlight?: number;
  /** Requests per statement at most (default 64). */
  maxBatch?: number;
  /** Requests waiting for a statement at most (default 1000). */
  queueLimit?: number;
  /** Longest wait for a statement, in milliseconds (default 3000). */
  queueTimeoutMs?: number;
  /**
   * When a request finds no statement running: `now` sends it at once (default); `turn` waits for
   * the rest of this turn of the event loop (setImmediate, no timer), so every request that reaches
   * the batcher from the I/O callbacks of the same turn shares its statement. For a database that
   * runs on this thread (PGlite): while its statement runs nothing else does, so "at once" meant a
   * statement of one row each time the event loop had been idle (docs/benchmarks.md, "PGlite").
   */
  gather?: 'now' | 'turn';
}

/** Why a request was refused without being sent. */
export type QueueRefusal = { kind: 'queue_full'; waiting: number } | { kind: 'waited_too_long'; waitedMs: number };

/** Each request's answer from the statement: a value, or an error for that request alone. */
export type BatchAnswer<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface StatementBatcher<T, R> {
  /** Resolves with the request's answer once its statement answered; rejects with its error, the statement's, or a refusal. */
  submit(item: T): Promise<R>;
  /** Requests waiting for a statement, and statements running. */
  depth(): { waiting: number; inFlight: number };
}

interface Pending<T, R> {
  item: T;
  resolve(value: R): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

export function statementBatcher<T, R>(
  write: (items: T[]) => Promise<BatchAnswer<R>[]>,
  refuse: (reason: QueueRefusal) => Error,
  options: StatementBatcherOptions = {},
): StatementBatcher<T, R> {
  const maxInFlight = options.maxInFlight ?? 1;
  const maxBatch = options.maxBatch ?? 64;
  const queueLimit = options.queueLimit ?? 1000;
  const queueTimeoutMs = options.queueTimeoutMs ?? 3000;
  const gatherTurn = options.gather === 'turn';
  const queue: Pending<T, R>[] = [];
  let inFlight = 0;
  let gathering = false;

  function settle(batch: Pending<T, R>[], answers: BatchAnswer<R>[]): void {
    batch.forEach((pending, index) => {
      const answer = answers[index];
      if (answer === undefined) pending.reject(new Error('the statement gave no answer for one of its requests'));
      else if (answer.ok) pending.resolve(answer.value);
      else pending.reject(answer.error);
    });
  }

  function flush(): void {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      for (const pending of batch) clearTimeout(pending.timer);
      inFlight += 1;
      write(batch.map((pending) => pending.item))
        .then((answers) => settle(batch, answers), (error: unknown) => batch.forEach((pending) => pending.reject(error)))
        .finally(() => {
          inFlight -= 1;
          flush();
        });
    }
  }

  /** Sends now, or (gather: 'turn') once this turn's other requests have joined the queue. */
  function schedule(): void {
    if (!gatherTurn) return flush();
    if (gathering) return;
    gathering = true;
    setImmediate(() => {
      gathering = false;
      flush();
    });
  }

  function expire(pending: Pending<T, R>): void {
    const index = queue.indexOf(pending);
    if (index === -1) return;
    queue.splice(index, 1);
    pending.reject(refuse({ kind: 'waited_too_long', waitedMs: queueTimeoutMs }));
  }

  return {
    depth: () => ({ waiting: queue.length, inFlight }),
    submit(item) {
      if (queue.length >= queueLimit) return Promise.reject(refuse({ kind: 'queue_full', waiting: queue.length }));
      return new Promise<R>((resolve, reject) => {
        const pending: Pending<T, R> = { item, resolve, reject, timer: undefined as unknown as NodeJS.Timeout };
        pending.timer = setTimeout(() => expire(pending), queueTimeoutMs).unref();
        queue.push(pending);
        schedule();
      });
    },
  };
}

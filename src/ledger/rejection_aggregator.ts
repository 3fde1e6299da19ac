import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { appendEvent, appendEvents, type LedgerEventInput } from './append_event.js';
import type { RequestFacts } from './events.js';

/**
 * Bounded ledger cost for refusals nobody authenticated for (issue 12 item 6). Every such refusal
 * stays visible, but within a window only the first of each kind gets its own row, written before
 * the answer like any rejection; the others of that kind are counted and written as one row when
 * the window closes.
 *
 * A kind is (source address, endpoint, status, error, registered client or none, private reason):
 * one source guessing a client's secret leaves two rows a window, however fast it guesses. The
 * table of kinds is bounded: once it holds `maxKinds`, new kinds are counted per (endpoint, error)
 * only, without source or reason. So a window writes at most 2 × (maxKinds + endpoints × errors)
 * rows per instance, whatever the traffic (docs/ledger.md#rejections).
 */

export interface RejectionKind {
  sourceAddress: string | undefined;
  route: string;
  status: number;
  error: string;
  /** A registered client the request named (found by oidc-provider); never an arbitrary claimed id. */
  clientId: string | undefined;
  reason: string | undefined;
}

export interface RejectionAggregatorOptions {
  knex: Knex;
  logger: Logger;
  instanceId: string;
  /** Length of a window (config `ledger.rejectionWindow`). */
  windowMs: number;
  /** Kinds tracked per window (config `ledger.rejectionKinds`). */
  maxKinds: number;
}

export interface RejectionAggregator {
  /**
   * Records a refusal: writes `event` now if it is the first of its kind in this window (a failed
   * write is thrown, as for any rejection), otherwise only counts it.
   */
  record(kind: RejectionKind, event: LedgerEventInput, facts: RequestFacts): Promise<void>;
  /** Ends the window: one row per kind that was counted, then a fresh table. */
  flush(): Promise<void>;
  /** Stops the timer and flushes what was counted (call before closing the database). */
  stop(): Promise<void>;
}

interface Tally {
  kind: RejectionKind;
  overflow: boolean;
  /** Refusals counted beyond the first, which has its own row. */
  counted: number;
  firstCountedAt: Date | undefined;
  lastCountedAt: Date | undefined;
  lastRequestId: string | undefined;
}

function keyOf(kind: RejectionKind, overflow: boolean): string {
  const parts = overflow
    ? ['*', kind.route, kind.error]
    : [kind.sourceAddress ?? '', kind.route, String(kind.status), kind.error, kind.clientId ?? '', kind.reason ?? ''];
  return JSON.stringify(parts);
}

/** The row that stands for the refusals counted in a window (`details.count` of them). */
function countedEventOf(tally: Tally, windowMs: number): LedgerEventInput {
  const { kind } = tally;
  return {
    type: 'request.rejected',
    clientId: tally.overflow ? undefined : kind.clientId,
    details: {
      route: kind.route,
      status: tally.overflow ? undefined : kind.status,
      error: kind.error,
      reason: tally.overflow ? undefined : kind.reason,
      count: tally.counted,
      first_at: tally.firstCountedAt?.toISOString(),
      last_at: tally.lastCountedAt?.toISOString(),
      window_seconds: windowMs / 1000,
      // Kinds beyond rejectionKinds: any source, any client, any reason.
      ...(tally.overflow ? { overflow: true } : {}),
    },
  };
}

export function createRejectionAggregator(options: RejectionAggregatorOptions): RejectionAggregator {
  const { knex, logger, instanceId, windowMs, maxKinds } = options;
  let tallies = new Map<string, Tally>();
  let flushing: Promise<void> | undefined;

  function tallyFor(kind: RejectionKind): { tally: Tally; isNew: boolean } {
    const exact = keyOf(kind, false);
    const known = tallies.get(exact);
    if (known) return { tally: known, isNew: false };
    const overflow = tallies.size >= maxKinds;
    const key = overflow ? keyOf(kind, true) : exact;
    const existing = tallies.get(key);
    if (existing) return { tally: existing, isNew: false };
    const tally: Tally = { kind, overflow, counted: 0, firstCountedAt: undefined, lastCountedAt: undefined, lastRequestId: undefined };
    tallies.set(key, tally);
    return { tally, isNew: true };
  }

  async function record(kind: RejectionKind, event: LedgerEventInput, facts: RequestFacts): Promise<void> {
    const { tally, isNew } = tallyFor(kind);
    if (isNew) {
      await appendEvent(knex, event, facts);
      return;
    }
    const now = new Date();
    tally.counted += 1;
    tally.firstCountedAt ??= now;
    tally.lastCountedAt = now;
    tally.lastRequestId = facts.requestId;
  }

  async function writeCounted(ended: Map<string, Tally>): Promise<void> {
    const rows = [...ended.values()].filter((tally) => tally.counted > 0).map((tally) => ({
      event: countedEventOf(tally, windowMs),
      facts: { requestId: tally.lastRequestId!, sourceAddress: tally.overflow ? undefined : tally.kind.sourceAddress, instanceId },
    }));
    if (rows.length === 0) return;
    try {
      await appendEvents(knex, rows);
    } catch (error) {
      // Memory stays bounded: the counts are dropped, but said in the log.
      const refusals = rows.reduce((sum, row) => sum + Number(row.event.details!.count), 0);
      logger.error({ err: error, rows: rows.length, refusals }, 'could not record aggregated rejections in the ledger');
    }
  }

  async function flush(): Promise<void> {
    await flushing;
    const ended = tallies;
    tallies = new Map();
    const running = writeCounted(ended);
    flushing = running;
    await running;
    if (flushing === running) flushing = undefined;
  }

  const timer = setInterval(() => void flush(), windowMs);
  timer.unref();

  return {
    record,
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}

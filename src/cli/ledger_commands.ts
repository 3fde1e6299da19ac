import { setTimeout as sleep } from 'node:timers/promises';
import { LEDGER_EVENT_TYPES, PRUNABLE_EVENT_TYPES, type PrunableEventType } from '../ledger/events.js';
import { eventsAfter, latestEvents, type EventFilter } from '../ledger/inventory_queries.js';
import { pruneEvents } from '../ledger/prune_events.js';
import { causeOf, CommandError, eventJson, eventLine, writeJson, writeLine, type CommandContext } from './inventory_output.js';

/** `tether ledger tail`: the newest events, and with --follow every event after them as it settles. */

export interface LedgerTailOptions {
  lines?: number;
  follow?: boolean;
  json?: boolean;
  client?: string;
  type?: string;
  /** --follow: how often to poll (default 1000 ms). */
  intervalMs?: number;
  /** --follow: how old an event must be before it is shown (see inventory_queries.ts eventsAfter). */
  settleMs?: number;
  /** Stops --follow (Ctrl-C in the CLI; tests). */
  signal?: AbortSignal;
}

function filterOf(options: LedgerTailOptions): EventFilter {
  if (options.type !== undefined && !(LEDGER_EVENT_TYPES as readonly string[]).includes(options.type)) {
    throw new CommandError(`--type must be one of ${LEDGER_EVENT_TYPES.join(', ')}`);
  }
  return { clientId: options.client, type: options.type };
}

/** Events as lines (or one JSON object per line with --json, for `jq`). */
export async function ledgerTail(context: CommandContext, options: LedgerTailOptions = {}): Promise<void> {
  const filter = filterOf(options);
  const print = (event: Parameters<typeof eventLine>[0]) => writeLine(context, options.json ? JSON.stringify(eventJson(event)) : eventLine(event));
  const recent = await latestEvents(context.knex, options.lines ?? 20, filter);
  recent.forEach(print);
  if (!options.follow) return;

  // Polls by id: ids only grow; an event is shown once it has settled, so none is skipped.
  let cursor = recent.at(-1)?.id ?? 0;
  const { signal } = options;
  while (!signal?.aborted) {
    const events = await eventsAfter(context.knex, cursor, { ...filter, settleMs: options.settleMs });
    events.forEach(print);
    cursor = events.at(-1)?.id ?? cursor;
    if (events.length === 0) {
      await sleep(options.intervalMs ?? 1000, undefined, { signal }).catch(() => undefined);
    }
  }
}

/**
 * `tether ledger prune --before <when>`: retention for rejection and introspection events
 * (docs/ledger.md#retention). Issuance, exchange, revocation and client events are never deleted.
 */
export interface LedgerPruneOptions {
  /** An ISO 8601 date or time (`2026-01-01`, `2026-01-01T00:00:00Z`), or an age: `30d`, `12h`. */
  before: string;
  /** Only this prunable type (default: both). */
  type?: string;
  dryRun?: boolean;
  json?: boolean;
  /** Default: now (tests). */
  now?: Date;
}

const AGE = /^(\d+)(d|h)$/;

/** The cut-off an operator gave: a date in the past, or an age before now. */
export function pruneCutoffOf(before: string, now: Date = new Date()): Date {
  const age = AGE.exec(before);
  const cutoff = age
    ? new Date(now.getTime() - Number(age[1]) * (age[2] === 'd' ? 86_400_000 : 3_600_000))
    : /^\d{4}-\d\d-\d\d([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(before) ? new Date(before) : undefined;
  if (cutoff === undefined || Number.isNaN(cutoff.getTime())) {
    throw new CommandError(`--before must be an ISO 8601 date or time (2026-01-01, 2026-01-01T00:00:00Z) or an age (30d, 12h), not ${JSON.stringify(before)}`);
  }
  if (cutoff.getTime() > now.getTime()) throw new CommandError(`--before ${before} is in the future`);
  return cutoff;
}

export async function ledgerPrune(context: CommandContext, options: LedgerPruneOptions): Promise<void> {
  const before = pruneCutoffOf(options.before, options.now);
  if (options.type !== undefined && !(PRUNABLE_EVENT_TYPES as readonly string[]).includes(options.type)) {
    throw new CommandError(`--type must be one of ${PRUNABLE_EVENT_TYPES.join(', ')} (no other event is ever pruned)`);
  }
  const types = options.type ? [options.type as PrunableEventType] : PRUNABLE_EVENT_TYPES;
  const counts = await pruneEvents(context.knex, { before, types, dryRun: options.dryRun }, causeOf(context, `retention: events before ${before.toISOString()}`), context.facts);
  if (options.json) {
    writeJson(context, { before: before.toISOString(), dry_run: Boolean(options.dryRun), [options.dryRun ? 'would_delete' : 'deleted']: counts });
    return;
  }
  const listed = types.map((type) => `${counts[type]} ${type}`).join(' and ');
  writeLine(context, `${options.dryRun ? 'would prune' : 'pruned'} ${listed} events before ${before.toISOString()}`);
  writeLine(context, 'issuance, exchange, revocation and client events are never pruned');
}

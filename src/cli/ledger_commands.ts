import { setTimeout as sleep } from 'node:timers/promises';
import { LEDGER_EVENT_TYPES } from '../ledger/events.js';
import { eventsAfter, latestEvents, type EventFilter } from '../ledger/inventory_queries.js';
import { CommandError, eventJson, eventLine, writeLine, type CommandContext } from './inventory_output.js';

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
  if (options.type !== undefined && !(LEDGER_EVENT_TYPES as string[]).includes(options.type)) {
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

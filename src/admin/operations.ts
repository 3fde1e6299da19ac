import { setTimeout as sleep } from 'node:timers/promises';
import { clientsList, clientsResume, clientsShow, clientsSuspend } from '../cli/clients_commands.js';
import { eventJson, eventLine, type CommandContext } from '../cli/inventory_output.js';
import { keysList, keysRetire, keysRotate } from '../cli/keys_actions.js';
import { ledgerTail } from '../cli/ledger_commands.js';
import { reportCommand, windowOfInput } from '../cli/report_command.js';
import { tokensList, tokensRevoke, tokensShow } from '../cli/tokens_commands.js';
import { LEDGER_EVENT_TYPES } from '../ledger/events.js';
import { eventsAfter, latestEvents, type EventFilter } from '../ledger/inventory_queries.js';
import { loadTetherSigningJwks } from '../testing/signing_key.js';
import type { AdminCaller } from './authenticate.js';
import { OperationError } from './operation_error.js';

/**
 * What the admin API does: one table of operations (docs/admin.md#endpoints). The inventory
 * operations run the very functions behind `tether tokens|clients|ledger` (src/cli), so the API
 * answers exactly what `--json` prints, and with `format=text` exactly what the table prints —
 * which is how the CLI talks to a running `tether dev` (cli/admin_remote.ts).
 */

/** String parameters from the query (GET) or the JSON body (POST). */
export type OperationInput = Readonly<Record<string, string | undefined>>;

export interface OperationRun {
  context: CommandContext;
  /** Path parameters, decoded. */
  params: readonly string[];
  input: OperationInput;
  json: boolean;
  /** Aborted when the caller goes away or the server stops (streams). */
  signal: AbortSignal;
  /** Who called: an operation may be offered to the dev credential only. */
  caller: AdminCaller;
}

export interface AdminOperation {
  /** For the ledger (`admin.called` details.operation). */
  name: string;
  method: 'GET' | 'POST';
  /** Matched against the path below `<admin.path>/api`; groups are the parameters. */
  path: RegExp;
  /** Input names the operation reads; any other is refused. */
  accepts: readonly string[];
  /** The answer is a stream (written while it runs) rather than a document. */
  streams?: (input: OperationInput) => boolean;
  /** `text/event-stream` instead of the JSON/text formats. */
  eventStream?: boolean;
  /** Checks the input before a stream opens (its status line cannot say 400 once sent). */
  check?: (input: OperationInput) => void;
  run(run: OperationRun): Promise<void>;
}

function integerOf(input: OperationInput, name: string, fallback: number, max: number): number {
  const value = input[name];
  if (value === undefined) return fallback;
  if (!/^\d{1,9}$/.test(value) || Number(value) > max) throw new OperationError(400, `${name} must be an integer from 0 to ${max}`);
  return Number(value);
}

function eventFilterOf(input: OperationInput): EventFilter {
  if (input.type !== undefined && !(LEDGER_EVENT_TYPES as readonly string[]).includes(input.type)) {
    throw new OperationError(400, `type must be one of ${LEDGER_EVENT_TYPES.join(', ')}`);
  }
  return { clientId: input.client, type: input.type };
}

const flag = (value: string | undefined) => value === 'true' || value === '1';

/** A ledger page: the newest `limit` events, or with `after` the `limit` events after that id (oldest first). */
async function ledgerPage({ context, input, json }: OperationRun): Promise<void> {
  const limit = integerOf(input, 'limit', 100, 1000);
  const filter = eventFilterOf(input);
  const events = input.after === undefined
    ? await latestEvents(context.knex, limit, filter)
    : await eventsAfter(context.knex, integerOf(input, 'after', 0, Number.MAX_SAFE_INTEGER), { ...filter, limit });
  const cursor = events.at(-1)?.id ?? (input.after === undefined ? 0 : Number(input.after));
  context.out.write(json
    ? `${JSON.stringify({ events: events.map(eventJson), next_cursor: cursor }, null, 2)}\n`
    : `${events.map(eventLine).join('\n')}${events.length ? '\n' : ''}`);
}

/** Server-Sent Events: every settled event after `after` (or Last-Event-ID), one `ledger` event each, polled. */
async function ledgerStream({ context, input, signal }: OperationRun): Promise<void> {
  const filter = eventFilterOf(input);
  let cursor = input.after === undefined ? (await latestEvents(context.knex, 1)).at(-1)?.id ?? 0 : integerOf(input, 'after', 0, Number.MAX_SAFE_INTEGER);
  const intervalMs = integerOf(input, 'interval_ms', 1000, 60_000);
  // A comment line at once: the client knows the stream is open (and proxies flush their buffers).
  context.out.write(': tether ledger stream\n\n');
  while (!signal.aborted) {
    const events = await eventsAfter(context.knex, cursor, { ...filter, limit: 500 });
    for (const event of events) context.out.write(`id: ${event.id}\nevent: ledger\ndata: ${JSON.stringify(eventJson(event))}\n\n`);
    cursor = events.at(-1)?.id ?? cursor;
    if (events.length === 0) await sleep(Math.max(intervalMs, 100), undefined, { signal }).catch(() => undefined);
  }
}

const ID = '([^/]+)';

export const ADMIN_OPERATIONS: readonly AdminOperation[] = [
  {
    name: 'tokens.list', method: 'GET', path: /^\/tokens$/, accepts: ['client', 'resource', 'issuer', 'state', 'limit'],
    run: async ({ context, input, json }) => {
      await tokensList(context, { client: input.client, resource: input.resource, issuer: input.issuer, state: input.state, limit: integerOf(input, 'limit', 100, 10_000), json });
    },
  },
  {
    name: 'tokens.revoke', method: 'POST', path: /^\/tokens\/revoke$/, accepts: ['token_id', 'client_id', 'resource', 'reason'],
    run: async ({ context, input, json }) => {
      await tokensRevoke(context, input.token_id, { client: input.client_id, resource: input.resource, reason: input.reason, json });
    },
  },
  {
    name: 'tokens.show', method: 'GET', path: new RegExp(`^/tokens/${ID}$`), accepts: [],
    run: async ({ context, params, json }) => tokensShow(context, params[0]!, { json }),
  },
  {
    name: 'clients.list', method: 'GET', path: /^\/clients$/, accepts: [],
    run: async ({ context, json }) => clientsList(context, { json }),
  },
  {
    name: 'clients.show', method: 'GET', path: new RegExp(`^/clients/${ID}$`), accepts: ['events'],
    run: async ({ context, params, input, json }) => clientsShow(context, params[0]!, { json, events: integerOf(input, 'events', 10, 1000) }),
  },
  {
    name: 'clients.suspend', method: 'POST', path: new RegExp(`^/clients/${ID}/suspend$`), accepts: ['reason'],
    run: async ({ context, params, input, json }) => clientsSuspend(context, params[0]!, { json, reason: input.reason }),
  },
  {
    name: 'clients.resume', method: 'POST', path: new RegExp(`^/clients/${ID}/resume$`), accepts: ['reason'],
    run: async ({ context, params, input, json }) => clientsResume(context, params[0]!, { json, reason: input.reason }),
  },
  {
    name: 'ledger.page', method: 'GET', path: /^\/ledger$/, accepts: ['after', 'limit', 'client', 'type'],
    run: ledgerPage,
  },
  {
    // `tether ledger tail [--follow]` as it prints (JSON lines with format=json).
    name: 'ledger.tail', method: 'GET', path: /^\/ledger\/tail$/, accepts: ['lines', 'client', 'type', 'follow'],
    streams: (input) => flag(input.follow),
    check: (input) => {
      eventFilterOf(input);
      integerOf(input, 'lines', 20, 10_000);
    },
    run: async ({ context, input, json, signal }) => ledgerTail(context, {
      lines: integerOf(input, 'lines', 20, 10_000), client: input.client, type: input.type, follow: flag(input.follow), json, signal,
    }),
  },
  {
    name: 'ledger.stream', method: 'GET', path: /^\/ledger\/stream$/, accepts: ['after', 'client', 'type', 'interval_ms'],
    streams: () => true, eventStream: true,
    check: (input) => {
      eventFilterOf(input);
      integerOf(input, 'after', 0, Number.MAX_SAFE_INTEGER);
      integerOf(input, 'interval_ms', 1000, 60_000);
    },
    run: ledgerStream,
  },
  {
    // `tether report`: the exposure report (docs/report.md).
    name: 'report', method: 'GET', path: /^\/report$/, accepts: ['window', 'client', 'resource'],
    run: async ({ context, input, json }) => {
      await reportCommand(context, { window: windowOfInput(input.window), client: input.client, resource: input.resource, json });
    },
  },
  {
    name: 'keys.list', method: 'GET', path: /^\/keys$/, accepts: [],
    run: ({ context, json }) => keysList(context, { json }),
  },
  {
    name: 'keys.rotate', method: 'POST', path: /^\/keys\/rotate$/, accepts: ['immediately'],
    run: ({ context, input, json }) => keysRotate(context, { immediately: flag(input.immediately), json }),
  },
  {
    name: 'keys.retire', method: 'POST', path: new RegExp(`^/keys/${ID}/retire$`), accepts: ['force', 'withdraw_now'],
    run: ({ context, params, input, json }) => keysRetire(context, params[0]!, { force: flag(input.force), withdrawNow: flag(input.withdraw_now), json }),
  },
  {
    // `tether probe --issuer` signs its hostile tokens (expired, wrong audience, …) with Tether's own
    // key, so that each is wrong in one way only. Only for `tether dev`'s local credential: the dev
    // key signs nothing that matters, and a production key never leaves its database this way.
    name: 'keys.signing', method: 'GET', path: /^\/keys\/signing$/, accepts: [],
    run: async ({ context, caller }) => {
      if (caller.via !== 'dev-credential') throw new OperationError(404, 'no such admin operation');
      const { signing } = context.config;
      const key = await loadTetherSigningJwks(context.knex, { algorithm: signing.algorithm, encryptionSecret: signing.encryptionSecret });
      context.out.write(`${JSON.stringify({ kid: key.kid, alg: key.alg, private_jwk: key.privateJwk, public_jwk: key.publicJwk }, null, 2)}\n`);
    },
  },
];

/** The operation a request names, with its decoded path parameters; undefined when none matches. */
export function matchOperation(method: string, subpath: string): { operation: AdminOperation; params: string[] } | 'method' | undefined {
  let pathMatched = false;
  for (const operation of ADMIN_OPERATIONS) {
    const match = operation.path.exec(subpath);
    if (!match) continue;
    pathMatched = true;
    if (operation.method !== method) continue;
    try {
      return { operation, params: match.slice(1).map((value) => decodeURIComponent(value)) };
    } catch {
      throw new OperationError(400, 'malformed percent-encoding in the path');
    }
  }
  return pathMatched ? 'method' : undefined;
}

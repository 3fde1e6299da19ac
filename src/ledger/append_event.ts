import type { Knex } from 'knex';
import type { TokenBinding } from '../binding/methods.js';
import type { LedgerEventType, RequestFacts } from './events.js';
import { rowsOf } from './rows.js';

/** One row of `ledger_events`, as written. Every field but `type` is optional. */
export interface LedgerEventInput {
  type: LedgerEventType;
  clientId?: string;
  resource?: string;
  scope?: string;
  tokenId?: string;
  tokenFormat?: 'jwt' | 'opaque';
  binding?: TokenBinding;
  expiresAt?: Date;
  parentTokenId?: string;
  actor?: string;
  details?: Record<string, unknown>;
}

/** The column values of one event, in the order of {@link EVENT_COLUMNS}. */
function eventValues(event: LedgerEventInput, facts: RequestFacts): unknown[] {
  return [
    event.type,
    event.clientId ?? null,
    event.resource ?? null,
    event.scope ?? null,
    event.tokenId ?? null,
    event.tokenFormat ?? null,
    event.binding?.method ?? null,
    event.binding && event.binding.method !== 'bearer' ? event.binding.thumbprint : null,
    event.expiresAt?.toISOString() ?? null,
    event.parentTokenId ?? null,
    event.actor ?? null,
    facts.requestId,
    facts.sourceAddress ?? null,
    facts.instanceId,
    event.details ? JSON.stringify(event.details) : null,
  ];
}

export const EVENT_COLUMNS = 'type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint, '
  + 'expires_at, parent_token_id, actor, request_id, source_address, instance_id, details';
/** Placeholders for {@link eventValues}; explicit casts, as the values are sent as text. */
const EVENT_PLACEHOLDERS = '?, ?, ?, ?, ?, ?, ?, ?, ?::timestamptz, ?, ?, ?, ?, ?, ?::jsonb';

/** Appends one event; `db` may be a transaction so that the event commits with what it records. */
export async function appendEvent(db: Knex | Knex.Transaction, event: LedgerEventInput, facts: RequestFacts): Promise<void> {
  await db.raw(`INSERT INTO ledger_events (${EVENT_COLUMNS}) VALUES (${EVENT_PLACEHOLDERS})`, eventValues(event, facts) as Knex.RawBinding[]);
}

/**
 * Appends several events, each with its own request facts, in as few statements as the driver's
 * parameter limit allows (a flush of aggregated rejections; ledger/rejection_aggregator.ts).
 */
export async function appendEvents(db: Knex | Knex.Transaction, events: readonly { event: LedgerEventInput; facts: RequestFacts }[]): Promise<void> {
  const perStatement = 500;
  for (let offset = 0; offset < events.length; offset += perStatement) {
    const chunk = events.slice(offset, offset + perStatement);
    await db.raw(
      `INSERT INTO ledger_events (${EVENT_COLUMNS}) VALUES ${chunk.map(() => `(${EVENT_PLACEHOLDERS})`).join(', ')}`,
      chunk.flatMap(({ event, facts }) => eventValues(event, facts)) as Knex.RawBinding[],
    );
  }
}

/** Whether a client is suspended, read from the database (client_states.ts caches this for the token path). */
export async function isClientSuspended(knex: Knex, clientId: string): Promise<boolean> {
  const [row] = rowsOf(await knex.raw('SELECT suspended FROM client_states WHERE client_id = ?', [clientId]));
  return row?.suspended === true;
}

/**
 * A `token.introspected` event; an active answer also records the token's use (`last_used_at`), in
 * the same statement.
 */
export async function recordIntrospection(knex: Knex, event: LedgerEventInput & { active: boolean }, facts: RequestFacts): Promise<void> {
  const { active, ...rest } = event;
  const values = eventValues({ ...rest, type: 'token.introspected' }, facts) as Knex.RawBinding[];
  if (!active || !event.tokenId) {
    await knex.raw(`INSERT INTO ledger_events (${EVENT_COLUMNS}) VALUES (${EVENT_PLACEHOLDERS})`, values);
    return;
  }
  await knex.raw(`
    WITH used AS (UPDATE issued_tokens SET last_used_at = now() WHERE token_id = ? RETURNING token_id)
    INSERT INTO ledger_events (${EVENT_COLUMNS}) VALUES (${EVENT_PLACEHOLDERS})`, [event.tokenId, ...values]);
}

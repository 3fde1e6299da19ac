import type { Knex } from 'knex';
import type { IssuedToken, LedgerEventType, RequestFacts, TokenBinding } from './events.js';
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
/** Placeholders for {@link eventValues}; the casts let the values stand in a SELECT list. */
const EVENT_PLACEHOLDERS = '?, ?, ?, ?, ?, ?, ?, ?, ?::timestamptz, ?, ?, ?, ?, ?, ?::jsonb';

/** Appends one event; `db` may be a transaction so that the event commits with what it records. */
export async function appendEvent(db: Knex | Knex.Transaction, event: LedgerEventInput, facts: RequestFacts): Promise<void> {
  await db.raw(`INSERT INTO ledger_events (${EVENT_COLUMNS}) VALUES (${EVENT_PLACEHOLDERS})`, eventValues(event, facts) as Knex.RawBinding[]);
}

/** The `act` claim's acting client (RFC 8693 §4.1), for the ledger's actor column. */
function actorOf(issued: IssuedToken): string | undefined {
  const sub = issued.act?.sub;
  return typeof sub === 'string' ? sub : undefined;
}

/** The issuance statement refused: the client was suspended after the token path checked it. */
export class ClientSuspendedError extends Error {
  constructor(readonly clientId: string) {
    super(`client ${clientId} is suspended`);
    this.name = 'ClientSuspendedError';
  }
}

/**
 * One statement, one round trip, one implicit transaction: lock the client's state row (a suspension
 * waits for this issuance to commit, and an issuance after a suspension sees it: client_states.ts),
 * insert the event unless the client is suspended, and insert the token's row from the event's.
 */
const RECORD_ISSUANCE_SQL = `
WITH client_state AS (
  SELECT suspended FROM client_states WHERE client_id = ? FOR KEY SHARE
), event AS (
  INSERT INTO ledger_events (${EVENT_COLUMNS})
  SELECT ${EVENT_PLACEHOLDERS}
  WHERE NOT EXISTS (SELECT 1 FROM client_state WHERE suspended)
  RETURNING client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint, expires_at, parent_token_id
), token AS (
  INSERT INTO issued_tokens (token_id, format, client_id, resource, scope, binding_method, binding_thumbprint, issued_at, expires_at, parent_token_id, act)
  SELECT token_id, token_format, client_id, resource, scope, binding_method, binding_thumbprint, ?::timestamptz, expires_at, parent_token_id, ?::jsonb
  FROM event
  RETURNING token_id
)
SELECT count(*)::int AS recorded FROM token`;

/**
 * DESIGN "no token without a record": the token's event and its inventory row are committed by one
 * statement; the caller returns the token only after this resolves. Rejects with
 * {@link ClientSuspendedError} when the client is suspended, and with the driver's error when the
 * database cannot commit (the token path turns both into "no token").
 */
export async function recordIssuance(knex: Knex, type: 'token.issued' | 'token.exchanged', issued: IssuedToken, facts: RequestFacts): Promise<void> {
  const event = eventValues({
    type,
    clientId: issued.clientId,
    resource: issued.resource,
    scope: issued.scope.join(' '),
    tokenId: issued.tokenId,
    tokenFormat: issued.format,
    binding: issued.binding,
    expiresAt: issued.expiresAt,
    parentTokenId: issued.parentTokenId,
    actor: actorOf(issued),
  }, facts);
  const bindings = [issued.clientId, ...event, issued.issuedAt.toISOString(), issued.act ? JSON.stringify(issued.act) : null];
  const [row] = rowsOf(await knex.raw(RECORD_ISSUANCE_SQL, bindings as Knex.RawBinding[]));
  if (row?.recorded !== 1) throw new ClientSuspendedError(issued.clientId);
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

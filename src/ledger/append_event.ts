import type { Knex } from 'knex';
import type { IssuedToken, LedgerEventType, RequestFacts, TokenBinding } from './events.js';

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

/** Appends one event; `db` may be a transaction so that the event commits with what it records. */
export async function appendEvent(db: Knex | Knex.Transaction, event: LedgerEventInput, facts: RequestFacts): Promise<void> {
  await db('ledger_events').insert({
    type: event.type,
    client_id: event.clientId ?? null,
    resource: event.resource ?? null,
    scope: event.scope ?? null,
    token_id: event.tokenId ?? null,
    token_format: event.tokenFormat ?? null,
    binding_method: event.binding?.method ?? null,
    binding_thumbprint: event.binding && event.binding.method !== 'bearer' ? event.binding.thumbprint : null,
    expires_at: event.expiresAt ?? null,
    parent_token_id: event.parentTokenId ?? null,
    actor: event.actor ?? null,
    request_id: facts.requestId,
    source_address: facts.sourceAddress ?? null,
    instance_id: facts.instanceId,
    details: event.details ? JSON.stringify(event.details) : null,
  });
}

/** The `act` claim's acting client (RFC 8693 §4.1), for the ledger's actor column. */
function actorOf(issued: IssuedToken): string | undefined {
  const sub = issued.act?.sub;
  return typeof sub === 'string' ? sub : undefined;
}

/**
 * DESIGN "no token without a record": the token's event and its inventory row are written in one
 * transaction; the caller returns the token only after this resolves.
 */
export async function recordIssuance(knex: Knex, type: 'token.issued' | 'token.exchanged', issued: IssuedToken, facts: RequestFacts): Promise<void> {
  await knex.transaction(async (trx) => {
    await appendEvent(trx, {
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
    await trx('issued_tokens').insert({
      token_id: issued.tokenId,
      format: issued.format,
      client_id: issued.clientId,
      resource: issued.resource,
      scope: issued.scope.join(' '),
      binding_method: issued.binding.method,
      binding_thumbprint: issued.binding.method === 'bearer' ? null : issued.binding.thumbprint,
      issued_at: issued.issuedAt,
      expires_at: issued.expiresAt,
      parent_token_id: issued.parentTokenId ?? null,
      act: issued.act ? JSON.stringify(issued.act) : null,
    });
  });
}

/** Whether a client is currently suspended (client.suspended / client.resumed events keep this row). */
export async function isClientSuspended(knex: Knex, clientId: string): Promise<boolean> {
  const row = await knex('client_states').where({ client_id: clientId }).first('suspended');
  return row?.suspended === true;
}

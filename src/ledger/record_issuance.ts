import type { Knex } from 'knex';
import type { IssuedToken, RequestFacts } from './events.js';
import { rowsOf } from './rows.js';

/**
 * DESIGN "no token without a record": a token's `token.issued` / `token.exchanged` event and its
 * `issued_tokens` row are committed by one statement before the token is returned. The statement
 * takes any number of issuances (issuance_batcher.ts groups concurrent ones), so its text never
 * changes and PostgreSQL can keep it prepared.
 */

/** One issuance as the statement takes it (JSON keys are the column names). */
export interface IssuanceRow {
  type: 'token.issued' | 'token.exchanged';
  client_id: string;
  /** null: derived by the statement (the parent's subject, else the client). */
  subject: string | null;
  resource: string;
  scope: string;
  token_id: string;
  token_format: 'jwt' | 'opaque';
  binding_method: string;
  binding_thumbprint: string | null;
  expires_at: string;
  parent_token_id: string | null;
  actor: string | null;
  request_id: string;
  source_address: string | null;
  instance_id: string;
  issued_at: string;
  act: Record<string, unknown> | null;
}

/** The `act` claim's acting party (RFC 8693 §4.1), for the ledger's actor column. */
function actorOf(issued: IssuedToken): string | null {
  const sub = issued.act?.sub;
  return typeof sub === 'string' ? sub : null;
}

export function issuanceRowOf(type: IssuanceRow['type'], issued: IssuedToken, facts: RequestFacts): IssuanceRow {
  return {
    type,
    client_id: issued.clientId,
    subject: issued.subject ?? null,
    resource: issued.resource,
    scope: issued.scope.join(' '),
    token_id: issued.tokenId,
    token_format: issued.format,
    binding_method: issued.binding.method,
    binding_thumbprint: issued.binding.method === 'bearer' ? null : issued.binding.thumbprint,
    expires_at: issued.expiresAt.toISOString(),
    parent_token_id: issued.parentTokenId ?? null,
    actor: actorOf(issued),
    request_id: facts.requestId,
    source_address: facts.sourceAddress ?? null,
    instance_id: facts.instanceId,
    issued_at: issued.issuedAt.toISOString(),
    act: issued.act ?? null,
  };
}

/** The issuance statement refused: the client was suspended after the token path checked it. */
export class ClientSuspendedError extends Error {
  constructor(readonly clientId: string) {
    super(`client ${clientId} is suspended`);
    this.name = 'ClientSuspendedError';
  }
}

/**
 * One statement, one implicit transaction, for every issuance given:
 * - lock each client's `client_states` row FOR KEY SHARE, whatever it says: a suspension (FOR UPDATE,
 *   client_states.ts) then waits for this statement to commit and revokes what it wrote, and a
 *   statement that starts during a suspension waits for it and re-reads the row as suspended;
 * - insert the events of clients that are not suspended;
 * - insert those tokens' inventory rows (an exchanged token's subject is its parent's).
 * It answers with the token ids it recorded.
 */
const RECORD_ISSUANCES_SQL = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset(?::jsonb) AS x(
    type text, client_id text, subject text, resource text, scope text, token_id text, token_format text, binding_method text,
    binding_thumbprint text, expires_at timestamptz, parent_token_id text, actor text, request_id text,
    source_address text, instance_id text, issued_at timestamptz, act jsonb)
), client_state AS MATERIALIZED (
  SELECT client_id, suspended FROM client_states WHERE client_id IN (SELECT client_id FROM input) FOR KEY SHARE
), event AS (
  INSERT INTO ledger_events (type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint,
                             expires_at, parent_token_id, actor, request_id, source_address, instance_id)
  SELECT i.type, i.client_id, i.resource, i.scope, i.token_id, i.token_format, i.binding_method, i.binding_thumbprint,
         i.expires_at, i.parent_token_id, i.actor, i.request_id, i.source_address, i.instance_id
  FROM input i LEFT JOIN client_state s ON s.client_id = i.client_id
  WHERE s.suspended IS NOT TRUE
  RETURNING token_id
), token AS (
  INSERT INTO issued_tokens (token_id, format, client_id, subject, resource, scope, binding_method, binding_thumbprint, issued_at, expires_at, parent_token_id, act)
  SELECT i.token_id, i.token_format, i.client_id,
         -- RFC 8693 §2.1: an exchanged token keeps the subject token's subject.
         COALESCE(i.subject, (SELECT p.subject FROM issued_tokens p WHERE p.token_id = i.parent_token_id), i.client_id),
         i.resource, i.scope, i.binding_method, i.binding_thumbprint, i.issued_at, i.expires_at, i.parent_token_id, i.act
  FROM input i JOIN event e ON e.token_id = i.token_id
  RETURNING token_id
)
SELECT token_id FROM token`;

/**
 * Records issuances in one statement; resolves with the ids of the tokens recorded (the others'
 * clients are suspended), rejects when the database cannot commit — then nothing was recorded.
 */
export async function recordIssuances(knex: Knex, rows: readonly IssuanceRow[]): Promise<Set<string>> {
  // A named statement: PostgreSQL parses and plans it once per connection instead of per issuance
  // (docs/ledger.md has the measurement). PGlite ignores the name.
  const statement = knex.raw(RECORD_ISSUANCES_SQL, [JSON.stringify(rows)]).options({ name: 'tether_record_issuances' });
  return new Set(rowsOf(await statement).map((row) => row.token_id as string));
}

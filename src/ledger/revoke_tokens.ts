import type { Knex } from 'knex';
import { EVENT_COLUMNS } from './append_event.js';
import type { Cause, RequestFacts } from './events.js';
import { rowsOf } from './rows.js';

/** Which tokens to revoke: given ids, or every live token of a client or of an API. */
export type RevocationSelection =
  | { tokenIds: string[] }
  | { clientId: string }
  | { resource: string };

/** A token this revocation changed (`cascadeFrom`: the revoked ancestor it was derived from). */
export interface RevokedToken {
  tokenId: string;
  clientId: string;
  resource: string;
  parentTokenId: string | undefined;
  cascadeFrom: string | undefined;
}

/** Roots of the revocation. Client and API selections take live tokens only (a child never outlives its parent). */
function rootsOf(selection: RevocationSelection): { where: string; bindings: Knex.RawBinding[] } {
  // Explicit placeholders: drivers disagree on how a JavaScript array binds.
  if ('tokenIds' in selection) return { where: `token_id IN (${selection.tokenIds.map(() => '?').join(', ')})`, bindings: selection.tokenIds };
  if ('clientId' in selection) return { where: 'client_id = ? AND expires_at > now()', bindings: [selection.clientId] };
  return { where: 'resource = ? AND expires_at > now()', bindings: [selection.resource] };
}

/**
 * One statement: the selected tokens and, recursively, every token exchanged from them
 * (issued_tokens.parent_token_id), marked revoked if live, each with its `token.revoked` event.
 * Already revoked and expired tokens are left as they are, so revoking twice changes nothing.
 */
function revocationSql(where: string): string {
  return `
WITH RECURSIVE lineage (token_id, root) AS (
  SELECT token_id, token_id FROM issued_tokens WHERE ${where}
  UNION
  SELECT child.token_id, lineage.root FROM issued_tokens child JOIN lineage ON child.parent_token_id = lineage.token_id
), targets AS (
  SELECT DISTINCT ON (token_id) token_id, root FROM lineage ORDER BY token_id, (token_id = root) DESC
), revoked AS (
  UPDATE issued_tokens SET revoked_at = now()
  FROM targets
  WHERE issued_tokens.token_id = targets.token_id AND issued_tokens.revoked_at IS NULL AND issued_tokens.expires_at > now()
  RETURNING issued_tokens.*, targets.root
), events AS (
  INSERT INTO ledger_events (${EVENT_COLUMNS})
  SELECT 'token.revoked', client_id, resource, scope, token_id, format, binding_method, binding_thumbprint, expires_at, parent_token_id,
         ?, ?, ?, ?,
         jsonb_strip_nulls(jsonb_build_object('reason', ?::text, 'cascade_from', CASE WHEN token_id = root THEN NULL ELSE root END))
  FROM revoked
  RETURNING id
)
SELECT token_id, client_id, resource, parent_token_id, root FROM revoked ORDER BY issued_at, token_id`;
}

/**
 * Revokes tokens with their whole exchange lineage (RFC 7009 §2.1 allows revoking related tokens; a
 * token derived from a revoked one must not outlive it). Commits with `db` (pass a transaction to
 * revoke together with other changes).
 */
export async function revokeTokens(db: Knex | Knex.Transaction, selection: RevocationSelection, cause: Cause, facts: RequestFacts): Promise<RevokedToken[]> {
  if ('tokenIds' in selection && selection.tokenIds.length === 0) return [];
  const roots = rootsOf(selection);
  const bindings = [...roots.bindings, cause.actor, facts.requestId, facts.sourceAddress ?? null, facts.instanceId, cause.reason];
  const rows = rowsOf(await db.raw(revocationSql(roots.where), bindings));
  return rows.map((row) => ({
    tokenId: row.token_id as string,
    clientId: row.client_id as string,
    resource: row.resource as string,
    parentTokenId: (row.parent_token_id as string | null) ?? undefined,
    cascadeFrom: row.root === row.token_id ? undefined : row.root as string,
  }));
}

import type { Knex } from 'knex';
import { EVENT_COLUMNS } from './append_event.js';
import type { Cause, RequestFacts } from './events.js';
import { MAX_LINEAGE_DEPTH } from './lineage.js';
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
function selectionOf(selection: RevocationSelection): { where: string; binding: Knex.RawBinding } {
  // One JSON array binding, so the statement text is the same whatever the number of ids.
  if ('tokenIds' in selection) return { where: 'token_id IN (SELECT jsonb_array_elements_text(?::jsonb))', binding: JSON.stringify(selection.tokenIds) };
  if ('clientId' in selection) return { where: 'client_id = ? AND expires_at > now()', binding: selection.clientId };
  return { where: 'resource = ? AND expires_at > now()', binding: selection.resource };
}

/**
 * Step 1: the selected tokens, with the roots of their lineages locked FOR UPDATE (in id order, as
 * the issuance statement takes them). An issuance of a child anywhere in those lineages holds its
 * root FOR SHARE (record_issuance.ts), so this waits for every such issuance in flight to commit,
 * and every later one waits for this transaction and then reads its parent as revoked.
 */
function lockLineagesSql(where: string): string {
  return `
WITH RECURSIVE selected AS MATERIALIZED (
  SELECT token_id, parent_token_id FROM issued_tokens WHERE ${where}
), ancestry (token_id, parent_token_id, hops) AS (
  SELECT token_id, parent_token_id, 0 FROM selected
  UNION
  SELECT t.token_id, t.parent_token_id, a.hops + 1 FROM ancestry a JOIN issued_tokens t ON t.token_id = a.parent_token_id
  WHERE a.hops < ${MAX_LINEAGE_DEPTH}
), root AS MATERIALIZED (
  SELECT t.token_id FROM issued_tokens t
  WHERE t.token_id IN (SELECT token_id FROM ancestry WHERE parent_token_id IS NULL OR hops = ${MAX_LINEAGE_DEPTH})
  ORDER BY t.token_id FOR UPDATE
)
SELECT token_id FROM selected WHERE (SELECT count(*) FROM root) >= 0`;
}

/**
 * Step 2, a new statement and therefore (READ COMMITTED) a new snapshot, taken after step 1's locks
 * were granted: it sees every child committed by the issuances step 1 waited for. The selected
 * tokens and, recursively, every token exchanged from them (issued_tokens.parent_token_id), marked
 * revoked if live, each with its `token.revoked` event. Already revoked and expired tokens are left
 * as they are, so revoking twice changes nothing.
 */
const REVOKE_LINEAGES_SQL = `
WITH RECURSIVE lineage (token_id, root, depth) AS (
  SELECT token_id, token_id, 0 FROM issued_tokens WHERE token_id IN (SELECT jsonb_array_elements_text(?::jsonb))
  UNION
  SELECT child.token_id, lineage.root, lineage.depth + 1 FROM issued_tokens child JOIN lineage ON child.parent_token_id = lineage.token_id
  WHERE lineage.depth < ${MAX_LINEAGE_DEPTH}
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

/**
 * Revokes tokens with their whole exchange lineage (RFC 7009 §2.1 allows revoking related tokens; a
 * token derived from a revoked one must not outlive it), in one transaction of two statements (a
 * savepoint when `db` is already a transaction: pass one to revoke together with other changes).
 * Once it has committed, no token derived from a revoked one is live, whatever exchanges ran
 * concurrently. A client or API selection is the tokens live when step 1 ran.
 */
export async function revokeTokens(db: Knex | Knex.Transaction, selection: RevocationSelection, cause: Cause, facts: RequestFacts): Promise<RevokedToken[]> {
  if ('tokenIds' in selection && selection.tokenIds.length === 0) return [];
  const { where, binding } = selectionOf(selection);
  const rows = await db.transaction(async (trx) => {
    const selected = rowsOf(await trx.raw(lockLineagesSql(where), [binding])).map((row) => row.token_id as string);
    if (selected.length === 0) return [];
    const bindings = [JSON.stringify(selected), cause.actor, facts.requestId, facts.sourceAddress ?? null, facts.instanceId, cause.reason];
    return rowsOf(await trx.raw(REVOKE_LINEAGES_SQL, bindings));
  });
  return rows.map((row) => ({
    tokenId: row.token_id as string,
    clientId: row.client_id as string,
    resource: row.resource as string,
    parentTokenId: (row.parent_token_id as string | null) ?? undefined,
    cascadeFrom: row.root === row.token_id ? undefined : row.root as string,
  }));
}

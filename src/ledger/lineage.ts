import type { Knex } from 'knex';
import type { TokenRecord } from './events.js';
import { rowsOf, tokenRecordOf } from './rows.js';

/**
 * A token's exchange lineage: `issued_tokens.parent_token_id` links each exchanged token to the
 * subject token it came from. Revoking a token revokes everything below it (revoke_tokens.ts), and a
 * token below a revoked one is never live, whether or not its own row says so yet.
 */

/**
 * The most ancestors a token may have. The issuance statement refuses a child that would have more
 * (record_issuance.ts), so every walk along a lineage — up to the root, down to the leaves — ends
 * within this many hops, and the walks of the issuance, the revocation, introspection, exchange
 * and the inventory all agree on where a lineage begins.
 */
export const MAX_LINEAGE_DEPTH = 32;

/** What introspection and token exchange need to know about a presented token's standing. */
export interface TokenStanding {
  /** The token's own ledger row; undefined when Tether has no record of it. */
  record: TokenRecord | undefined;
  /** The nearest revoked ancestor, if any (the token's own state is in `record`). */
  revokedAncestorId: string | undefined;
  /** How many ancestors the walk found (at most MAX_LINEAGE_DEPTH). */
  ancestors: number;
}

/**
 * The token's row and its ancestors' rows, nearest first, in one bounded recursive query. Each step
 * up is a primary-key probe (LATERAL … LIMIT 1): the statement is prepared once per connection and
 * its generic plan, perhaps made while the table was small, must never scan the whole table.
 */
const STANDING_SQL = `
WITH RECURSIVE lineage AS (
  SELECT t.*, 0 AS hops FROM issued_tokens t WHERE t.token_id = ?
  UNION ALL
  SELECT parent.*, lineage.hops + 1 FROM lineage
  CROSS JOIN LATERAL (SELECT p.* FROM issued_tokens p WHERE p.token_id = lineage.parent_token_id LIMIT 1) parent
  WHERE lineage.hops < ${MAX_LINEAGE_DEPTH}
)
SELECT * FROM lineage ORDER BY hops`;

/**
 * The one walk up a lineage: the token's own row (undefined when Tether has no record of it) and
 * the rows of the tokens it was exchanged from, nearest first, at most MAX_LINEAGE_DEPTH of them.
 */
export async function findLineageUp(db: Knex | Knex.Transaction, tokenId: string): Promise<{ own: TokenRecord | undefined; ancestors: TokenRecord[] }> {
  // Runs on every exchange and introspection: a named statement is parsed and planned once per
  // PostgreSQL connection (the text never varies). PGlite ignores the name.
  const [own, ...ancestors] = rowsOf(await db.raw(STANDING_SQL, [tokenId]).options({ name: 'tether_token_standing' }));
  return { own: own ? tokenRecordOf(own) : undefined, ancestors: ancestors.map(tokenRecordOf) };
}

export async function findTokenStanding(db: Knex | Knex.Transaction, tokenId: string): Promise<TokenStanding> {
  const { own, ancestors } = await findLineageUp(db, tokenId);
  return {
    record: own,
    revokedAncestorId: ancestors.find((ancestor) => ancestor.revokedAt !== undefined)?.tokenId,
    ancestors: ancestors.length,
  };
}

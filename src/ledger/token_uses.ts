import type { Knex } from 'knex';

/**
 * A token's uses as APIs reported them (use_events, docs/use-reports.md), summed per API, outcome
 * and reason: what `tether tokens show` and the admin API's token detail print. One indexed
 * query (use_events_token_id); a token presented a million times is still a handful of rows.
 */

export interface TokenUse {
  resource: string;
  outcome: 'accepted' | 'refused';
  /** Refused only. */
  reason: string | undefined;
  /** Presentations (folded reports counted each). */
  count: number;
  firstAt: Date;
  lastAt: Date;
}

/** Most groups listed (APIs × outcomes × reasons is small; the bound keeps a hostile history printable). */
const MAX_GROUPS = 100;

export async function usesOfToken(knex: Knex, tokenId: string): Promise<TokenUse[]> {
  const rows = await knex('use_events')
    .where({ token_id: tokenId })
    .groupBy('resource', 'outcome', 'reason')
    .select('resource', 'outcome', 'reason')
    .sum({ count: 'count' })
    .min({ first_at: 'occurred_at' })
    .max({ last_at: 'occurred_at' })
    .orderBy([{ column: 'resource' }, { column: 'outcome' }, { column: 'reason' }])
    .limit(MAX_GROUPS) as Record<string, unknown>[];
  return rows.map((row) => ({
    resource: String(row.resource),
    outcome: row.outcome as TokenUse['outcome'],
    reason: row.reason === null ? undefined : String(row.reason),
    count: Number(row.count),
    firstAt: row.first_at instanceof Date ? row.first_at : new Date(String(row.first_at)),
    lastAt: row.last_at instanceof Date ? row.last_at : new Date(String(row.last_at)),
  }));
}

import type { Knex } from 'knex';
import type { LedgerEvent, TokenRecord, TokenState } from './events.js';
import { findLineageUp, MAX_LINEAGE_DEPTH } from './lineage.js';
import { ledgerEventOf, rowsOf, tokenRecordOf } from './rows.js';

/**
 * Read-only questions a security team asks of the ledger: which tokens exist, whose, for which API,
 * in which state, derived from which, used when — and what happened, in order.
 */

type Db = Knex | Knex.Transaction;

export async function findTokenRecord(db: Db, tokenId: string): Promise<TokenRecord | undefined> {
  const row = await db('issued_tokens').where({ token_id: tokenId }).first();
  return row ? tokenRecordOf(row as Record<string, unknown>) : undefined;
}

export interface TokenFilter {
  clientId?: string;
  resource?: string;
  state?: TokenState;
  /** Federation: tokens issued for an identity of this trusted issuer (exact `iss`), or inheriting one by exchange. */
  externalIssuer?: string;
  /** Newest first; default 100. */
  limit?: number;
}

/** States are computed against the database clock, as the revocation and issuance statements are. */
function whereState(query: Knex.QueryBuilder, state: TokenState): Knex.QueryBuilder {
  switch (state) {
    case 'active': return query.whereNull('revoked_at').andWhereRaw('expires_at > now()');
    case 'expired': return query.whereNull('revoked_at').andWhereRaw('expires_at <= now()');
    case 'revoked': return query.whereNotNull('revoked_at');
  }
}

export async function listTokens(db: Db, filter: TokenFilter = {}): Promise<TokenRecord[]> {
  let query = db('issued_tokens').select('*');
  if (filter.clientId) query = query.where('client_id', filter.clientId);
  if (filter.resource) query = query.where('resource', filter.resource);
  if (filter.state) query = whereState(query, filter.state);
  if (filter.externalIssuer) query = query.where('external_issuer', filter.externalIssuer);
  const rows = await query.orderBy([{ column: 'issued_at', order: 'desc' }, { column: 'token_id', order: 'asc' }]).limit(filter.limit ?? 100);
  return (rows as Record<string, unknown>[]).map(tokenRecordOf);
}

/** Both walks stop after MAX_LINEAGE_DEPTH hops, the deepest a lineage can be (lineage.ts). */
export interface TokenLineage {
  /** The subject tokens this one was exchanged from, nearest first. */
  ancestors: TokenRecord[];
  /** Tokens exchanged from this one, recursively, with their distance from it (1 = child). */
  descendants: (TokenRecord & { depth: number })[];
}

const DESCENDANTS_SQL = `
WITH RECURSIVE down (token_id, depth) AS (
  SELECT token_id, 1 FROM issued_tokens WHERE parent_token_id = ?
  UNION
  SELECT t.token_id, down.depth + 1 FROM issued_tokens t JOIN down ON t.parent_token_id = down.token_id WHERE down.depth < ${MAX_LINEAGE_DEPTH}
)
SELECT t.*, down.depth FROM down JOIN issued_tokens t ON t.token_id = down.token_id ORDER BY down.depth, t.issued_at`;

export async function tokenLineage(db: Db, tokenId: string): Promise<TokenLineage> {
  const [{ ancestors }, down] = [await findLineageUp(db, tokenId), rowsOf(await db.raw(DESCENDANTS_SQL, [tokenId]))];
  return {
    ancestors,
    descendants: down.map((row) => ({ ...tokenRecordOf(row), depth: Number(row.depth) })),
  };
}

export async function eventsOfToken(db: Db, tokenId: string): Promise<LedgerEvent[]> {
  const rows = await db('ledger_events').where({ token_id: tokenId }).orderBy('id');
  return (rows as Record<string, unknown>[]).map(ledgerEventOf);
}

export interface ClientTokenCounts {
  active: number;
  total: number;
}

/** Per client: live tokens and all tokens ever issued. */
export async function tokenCountsByClient(db: Db): Promise<Map<string, ClientTokenCounts>> {
  const rows = rowsOf(await db.raw(`
    SELECT client_id,
           count(*) FILTER (WHERE revoked_at IS NULL AND expires_at > now())::int AS active,
           count(*)::int AS total
    FROM issued_tokens GROUP BY client_id`));
  return new Map(rows.map((row) => [row.client_id as string, { active: Number(row.active), total: Number(row.total) }]));
}

/** Suspension state per client (clients never suspended may have no row). */
export async function clientStates(db: Db): Promise<Map<string, { suspended: boolean; changedAt: Date }>> {
  const rows = (await db('client_states').select('client_id', 'suspended', 'changed_at')) as Record<string, unknown>[];
  return new Map(rows.map((row) => [row.client_id as string, { suspended: row.suspended === true, changedAt: new Date(row.changed_at as string | Date) }]));
}

export interface EventFilter {
  clientId?: string;
  type?: string;
}

function filtered(query: Knex.QueryBuilder, filter: EventFilter): Knex.QueryBuilder {
  let result = query;
  if (filter.clientId) result = result.where('client_id', filter.clientId);
  if (filter.type) result = result.where('type', filter.type);
  return result;
}

/** The newest `limit` events, oldest first. */
export async function latestEvents(db: Db, limit: number, filter: EventFilter = {}): Promise<LedgerEvent[]> {
  const rows = await filtered(db('ledger_events').select('*'), filter).orderBy('id', 'desc').limit(limit);
  return (rows as Record<string, unknown>[]).map(ledgerEventOf).reverse();
}

/**
 * Events after `afterId`, oldest first, that are at least `settleMs` old. Ids are assigned when a row
 * is inserted but become visible when its transaction commits, so a young event may still be
 * preceded by one with a lower id that has not committed yet; waiting for events to settle keeps a
 * follower from skipping it.
 */
export async function eventsAfter(db: Db, afterId: number, options: { limit?: number; settleMs?: number } & EventFilter = {}): Promise<LedgerEvent[]> {
  const settleSeconds = (options.settleMs ?? 1000) / 1000;
  const rows = await filtered(db('ledger_events').select('*'), options)
    .where('id', '>', afterId)
    .andWhereRaw('occurred_at <= now() - make_interval(secs => ?)', [settleSeconds])
    .orderBy('id')
    .limit(options.limit ?? 500);
  return (rows as Record<string, unknown>[]).map(ledgerEventOf);
}

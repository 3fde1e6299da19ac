import type { Knex } from 'knex';
import { appendEvent, isClientSuspended } from './append_event.js';
import type { Cause, RequestFacts } from './events.js';
import { revokeTokens, type RevokedToken } from './revoke_tokens.js';
import { rowsOf } from './rows.js';

/**
 * Suspension of clients. A suspended client gets no new tokens and its live tokens are revoked, with
 * every token exchanged from them.
 *
 * Ordering on PostgreSQL (several instances, READ COMMITTED): every issuance statement locks the
 * client's `client_states` row FOR SHARE (record_issuance.ts). A suspension locks the same row FOR
 * UPDATE, so it waits for in-flight issuances to commit and its revocation then sees their tokens;
 * an issuance that starts during the suspension waits for it and re-reads the row as suspended.
 * The revocation then locks the lineages of the client's tokens (revoke_tokens.ts), so exchanges of
 * those tokens by other clients cannot outlive it either. Lock order, as in the issuance statement:
 * the client row, then lineage roots in id order. This needs the row to exist before any issuance:
 * {@link ensureClientStates} creates them at start.
 */

/** Creates the state row of every configured client (not suspended) if it is missing. */
export async function ensureClientStates(knex: Knex, clientIds: readonly string[]): Promise<void> {
  if (clientIds.length === 0) return;
  await knex.raw(
    `INSERT INTO client_states (client_id) VALUES ${clientIds.map(() => '(?)').join(', ')} ON CONFLICT (client_id) DO NOTHING`,
    [...clientIds],
  );
}

/** Locks the client's state row for this transaction, creating it if needed; returns whether it is suspended. */
async function lockClientState(trx: Knex.Transaction, clientId: string): Promise<boolean> {
  await trx.raw('INSERT INTO client_states (client_id) VALUES (?) ON CONFLICT (client_id) DO NOTHING', [clientId]);
  const [row] = rowsOf(await trx.raw('SELECT suspended FROM client_states WHERE client_id = ? FOR UPDATE', [clientId]));
  return row?.suspended === true;
}

export interface SuspensionResult {
  /** False when the client was already suspended (no new event; live tokens are still revoked). */
  changed: boolean;
  revoked: RevokedToken[];
}

/** Suspends a client and revokes its live tokens (with their exchange lineage), in one transaction. */
export async function suspendClient(knex: Knex, clientId: string, cause: Cause, facts: RequestFacts): Promise<SuspensionResult> {
  return knex.transaction(async (trx) => {
    const wasSuspended = await lockClientState(trx, clientId);
    if (!wasSuspended) {
      await trx.raw('UPDATE client_states SET suspended = true, changed_at = now() WHERE client_id = ?', [clientId]);
      await appendEvent(trx, { type: 'client.suspended', clientId, actor: cause.actor, details: { reason: cause.reason } }, facts);
    }
    const revoked = await revokeTokens(trx, { clientId }, { actor: cause.actor, reason: `client suspended: ${cause.reason}` }, facts);
    return { changed: !wasSuspended, revoked };
  });
}

/** Lets a suspended client obtain tokens again (its revoked tokens stay revoked). */
export async function resumeClient(knex: Knex, clientId: string, cause: Cause, facts: RequestFacts): Promise<{ changed: boolean }> {
  return knex.transaction(async (trx) => {
    const wasSuspended = await lockClientState(trx, clientId);
    if (wasSuspended) {
      await trx.raw('UPDATE client_states SET suspended = false, changed_at = now() WHERE client_id = ?', [clientId]);
      await appendEvent(trx, { type: 'client.resumed', clientId, actor: cause.actor, details: { reason: cause.reason } }, facts);
    }
    return { changed: wasSuspended };
  });
}

/** The suspended clients, as the token path sees them. */
export interface SuspensionView {
  isSuspended(clientId: string): Promise<boolean>;
  /** The issuance statement found the client suspended: believe it before the next refresh. */
  noteSuspended(clientId: string): void;
}

/**
 * The token path's early suspension check without a database round trip per request: the set of
 * suspended clients, reloaded at most every `maxAgeMs`. A client in the set is confirmed against the
 * database, so a resumption takes effect at once. A suspension reaches this view within `maxAgeMs`;
 * until then the issuance statement itself refuses (record_issuance.ts), so no token is ever issued to a
 * suspended client either way.
 */
export function cachedSuspensions(knex: Knex, options: { maxAgeMs?: number } = {}): SuspensionView {
  const maxAgeMs = options.maxAgeMs ?? 1000;
  let suspended = new Set<string>();
  let loadedAt = -Infinity;
  let loading: Promise<void> | undefined;

  function reload(): Promise<void> {
    loading ??= knex.raw('SELECT client_id FROM client_states WHERE suspended')
      .then((result) => {
        suspended = new Set(rowsOf(result).map((row) => row.client_id as string));
        loadedAt = performance.now();
      })
      .finally(() => {
        loading = undefined;
      });
    return loading;
  }

  return {
    async isSuspended(clientId) {
      if (performance.now() - loadedAt > maxAgeMs) await reload();
      if (!suspended.has(clientId)) return false;
      const still = await isClientSuspended(knex, clientId);
      if (!still) suspended.delete(clientId);
      return still;
    },
    noteSuspended(clientId) {
      suspended.add(clientId);
    },
  };
}

import type { Knex } from 'knex';
import { cachedSuspensions } from './client_states.js';
import type { IssuanceEventType, IssuedToken, RequestFacts } from './events.js';
import { issuanceBatcher, type IssuanceBatcherOptions } from './issuance_batcher.js';
import { ClientSuspendedError, issuanceRowOf, recordIssuances } from './record_issuance.js';

/** What the token path asks of the ledger. */
export interface IssuanceLedger {
  /**
   * Resolves only once the issuance is committed; rejects with ClientSuspendedError or
   * ParentRefusedError (the statement refused it), IssuanceQueueError (never sent), or the database's error.
   */
  recordIssuance(event: { type: IssuanceEventType; issued: IssuedToken }, facts: RequestFacts): Promise<void>;
  /** Whether a client is suspended (a suspended client gets no new tokens). */
  isClientSuspended(clientId: string): Promise<boolean>;
  /** Issuances waiting to be written, and issuance statements running. */
  queueDepth(): { waiting: number; inFlight: number };
}

/**
 * The ledger of the token path: an issuance costs at most one database round trip (the issuance
 * statement, shared with the issuances running at the same time); the early suspension check is
 * served from a view reloaded about once a second.
 */
export function createIssuanceLedger(knex: Knex, options: { suspensionMaxAgeMs?: number; batching?: IssuanceBatcherOptions } = {}): IssuanceLedger {
  const suspensions = cachedSuspensions(knex, { maxAgeMs: options.suspensionMaxAgeMs });
  const batcher = issuanceBatcher((rows) => recordIssuances(knex, rows), options.batching);
  return {
    async recordIssuance({ type, issued }, facts) {
      try {
        await batcher.record(issuanceRowOf(type, issued, facts));
      } catch (error) {
        if (error instanceof ClientSuspendedError) suspensions.noteSuspended(error.clientId);
        throw error;
      }
    },
    isClientSuspended: (clientId) => suspensions.isSuspended(clientId),
    queueDepth: () => batcher.depth(),
  };
}

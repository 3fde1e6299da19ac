import type { Knex } from 'knex';
import { ClientSuspendedError, recordIssuance } from './append_event.js';
import { cachedSuspensions } from './client_states.js';
import type { IssuedToken, RequestFacts } from './events.js';

/** What the token path asks of the ledger (grants/grant_context.ts IssuanceRecorder). */
export interface IssuanceLedger {
  recordIssuance(event: { type: 'token.issued' | 'token.exchanged'; issued: IssuedToken }, facts: RequestFacts): Promise<void>;
  isClientSuspended(clientId: string): Promise<boolean>;
}

/**
 * The ledger of the token path: per issuance, one database round trip (the issuance statement); the
 * early suspension check is served from a view reloaded about once a second.
 */
export function createIssuanceLedger(knex: Knex, options: { suspensionMaxAgeMs?: number } = {}): IssuanceLedger {
  const suspensions = cachedSuspensions(knex, { maxAgeMs: options.suspensionMaxAgeMs });
  return {
    async recordIssuance({ type, issued }, facts) {
      try {
        await recordIssuance(knex, type, issued, facts);
      } catch (error) {
        if (error instanceof ClientSuspendedError) suspensions.noteSuspended(error.clientId);
        throw error;
      }
    },
    isClientSuspended: (clientId) => suspensions.isSuspended(clientId),
  };
}

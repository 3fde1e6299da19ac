import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { Knex } from 'knex';
import { ORDERS } from './config.js';
import type { RawResponse } from './raw_request.js';

/**
 * Pieces shared by the tests that attack Tether's view of its own URLs (test/http/served_origin,
 * test/http/reverse_proxy): a private_key_jwt client whose assertions the test signs with any
 * audience, and the ledger rows a request left.
 */

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const EVIL_TOKEN_ENDPOINT = 'https://evil.example/token';

export interface AssertingClient {
  /** The client's entry for `config.clients` (DPoP-bound, private_key_jwt). */
  config: Record<string, unknown>;
  /** A fresh (unique jti) assertion of `jwt-client` with the given `aud`. */
  assertion(aud: string | string[]): Promise<string>;
}

export async function assertingClient(id = 'jwt-client'): Promise<AssertingClient> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return {
    config: {
      id, owner: 'team-d', purpose: 'tests', binding: 'dpop',
      auth: { method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] } },
      resources: { [ORDERS]: ['orders:read'] },
    },
    assertion: (aud) => signAssertion(privateKey, id, aud),
  };
}

function signAssertion(key: CryptoKey, clientId: string, aud: string | string[]): Promise<string> {
  return new SignJWT({ aud })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime('1m')
    .sign(key);
}

/** The form of a client_credentials request authenticated by `assertion`. */
export function assertionForm(assertion: string): Record<string, string> {
  return { grant_type: 'client_credentials', resource: ORDERS, client_assertion_type: ASSERTION_TYPE, client_assertion: assertion };
}

/** What the lookups below need of a running Tether. */
export interface LedgerView {
  database: { knex: Knex };
  app: { unauthenticatedRejections: { flush(): Promise<void> } };
}

/**
 * Every ledger event the request left (by its X-Request-Id). Refusals nobody authenticated for are
 * counted per kind within a window (ledger/rejection_aggregator.ts): the window is ended first, so a
 * refusal that was counted rather than written appears as its kind's counted row, which carries the
 * id of the last request counted (this one).
 */
export async function ledgerEventsOf(tether: LedgerView, response: Pick<RawResponse, 'headers'>): Promise<Record<string, unknown>[]> {
  const requestId = response.headers['x-request-id'];
  if (typeof requestId !== 'string') throw new Error('the response has no X-Request-Id');
  await tether.app.unauthenticatedRejections.flush();
  return tether.database.knex('ledger_events').where({ request_id: requestId }).orderBy('id');
}

/** The one `request.rejected` event of a refused request. */
export async function rejectionOf(tether: LedgerView, response: Pick<RawResponse, 'headers'>): Promise<Record<string, unknown> & { details: Record<string, unknown> }> {
  const events = await ledgerEventsOf(tether, response);
  if (events.length !== 1 || events[0]!.type !== 'request.rejected') {
    throw new Error(`expected one request.rejected event, got ${JSON.stringify(events.map((event) => event.type))}`);
  }
  return events[0] as Record<string, unknown> & { details: Record<string, unknown> };
}

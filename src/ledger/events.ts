/**
 * Ledger event shapes. The ledger is append-only: a token's life is the sequence of its events
 * (issued or exchanged, introspected, revoked), and every refused request leaves a rejection event.
 */

import type { TokenBinding } from '../binding/methods.js';

/** What the token path knows about a token it has just minted. */
export interface IssuedToken {
  /** The value returned to the client (never stored). */
  value: string;
  format: 'jwt' | 'opaque';
  /** jti for JWTs; for opaque tokens the SHA-256 of the id, as the id is itself a bearer secret. */
  tokenId: string;
  clientId: string;
  resource: string;
  scope: string[];
  binding: TokenBinding;
  issuedAt: Date;
  expiresAt: Date;
  /** The token's `sub` when it is not its client (token exchange); the ledger derives it otherwise. */
  subject?: string;
  /** Token exchange: the subject token's id, and the `act` claim of the new token. */
  parentTokenId?: string;
  act?: Record<string, unknown>;
  /** Workload identity federation: the trusted issuer's identity the token was issued for (docs/federation.md). */
  external?: ExternalIdentity;
}

/** An external identity as the ledger records it: issuer, subject, SHA-256 of the external token id. */
export interface ExternalIdentity {
  issuer: string;
  subject: string;
  tokenId: string;
}

/** Facts about the request an event came from. */
export interface RequestFacts {
  requestId: string;
  sourceAddress: string | undefined;
  instanceId: string;
}

/**
 * The events that record a token's issuance: each grant names the one it commits (grants/registry.ts),
 * `token.exchanged` being the one whose token has a parent. The database's CHECK constraint lists
 * the same values (migrations/0004); a new one needs a migration as well.
 */
export const ISSUANCE_EVENT_TYPES = ['token.issued', 'token.exchanged'] as const;
export type IssuanceEventType = (typeof ISSUANCE_EVENT_TYPES)[number];

export const LEDGER_EVENT_TYPES = [
  ...ISSUANCE_EVENT_TYPES,
  'token.revoked',
  'token.introspected',
  'request.rejected',
  'client.suspended',
  'client.resumed',
  'ledger.pruned',
  'admin.called',
] as const;
export type LedgerEventType = (typeof LEDGER_EVENT_TYPES)[number];

/**
 * The high-volume events an operator may delete after a retention period (`tether ledger prune`,
 * docs/ledger.md#retention); the database refuses to delete any other (migrations/0004).
 */
export const PRUNABLE_EVENT_TYPES = ['request.rejected', 'token.introspected'] as const satisfies readonly LedgerEventType[];
export type PrunableEventType = (typeof PRUNABLE_EVENT_TYPES)[number];

/** A token's state as the inventory reports it: revoked wins over expired. */
export type TokenState = 'active' | 'expired' | 'revoked';

/** Every state, in the order the inventory lists them (`tether tokens list --state`). */
export const TOKEN_STATES: readonly TokenState[] = ['active', 'expired', 'revoked'];

/** One row of `issued_tokens`: what the ledger knows about a token now. */
export interface TokenRecord {
  tokenId: string;
  format: 'jwt' | 'opaque';
  clientId: string;
  /** `sub`: the client, or for an exchanged token the subject it acts for. */
  subject: string;
  resource: string;
  scope: string[];
  binding: TokenBinding;
  issuedAt: Date;
  expiresAt: Date;
  parentTokenId: string | undefined;
  act: Record<string, unknown> | undefined;
  /** Federation: the external identity the token (or the root of its lineage) was issued for. */
  external: ExternalIdentity | undefined;
  revokedAt: Date | undefined;
  lastUsedAt: Date | undefined;
}

/** One row of `ledger_events`, as read back. */
export interface LedgerEvent {
  id: number;
  occurredAt: Date;
  type: LedgerEventType;
  clientId: string | undefined;
  resource: string | undefined;
  scope: string | undefined;
  tokenId: string | undefined;
  tokenFormat: string | undefined;
  bindingMethod: string | undefined;
  bindingThumbprint: string | undefined;
  expiresAt: Date | undefined;
  parentTokenId: string | undefined;
  actor: string | undefined;
  requestId: string | undefined;
  sourceAddress: string | undefined;
  instanceId: string | undefined;
  details: Record<string, unknown> | undefined;
}

/** Who changed something, for events written outside a token request (CLI, admin). */
export interface Cause {
  /** e.g. the revoking client's id, or `cli:<user>`. */
  actor: string;
  /** Why, in words an operator will read in `tether ledger tail`. */
  reason: string;
}

export function tokenStateOf(token: Pick<TokenRecord, 'revokedAt' | 'expiresAt'>, now: Date = new Date()): TokenState {
  if (token.revokedAt) return 'revoked';
  return token.expiresAt.getTime() <= now.getTime() ? 'expired' : 'active';
}

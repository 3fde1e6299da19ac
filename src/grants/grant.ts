import type { KoaContextWithOIDC } from 'oidc-provider';
import type { IssuanceEventType } from '../ledger/events.js';

/** Answers one token request of a grant type (oidc-provider has authenticated the client). */
export type GrantHandler = (ctx: KoaContextWithOIDC) => Promise<void>;

/**
 * One grant type Tether serves at the token endpoint, as its module declares it; grants/registry.ts
 * lists them. Everything else about a grant (its oidc-provider registration, the clients'
 * `grant_types`, discovery's `grant_types_supported`) derives from this declaration.
 */
export interface Grant<Dependencies> {
  /** The `grant_type` value (RFC 6749 §4.4.2, or a URN such as RFC 8693 §2.1's). */
  readonly type: string;
  /** The request parameters oidc-provider hands the handler (it drops every other one). */
  readonly parameters: readonly string[];
  /** Parameters that may repeat at the HTTP level, so that policy rather than the parser refuses them. */
  readonly duplicableParameters: readonly string[];
  /** The ledger event an issuance of this grant commits before its response. */
  readonly eventType: IssuanceEventType;
  /** The page of docs/ that describes the grant. */
  readonly docs: string;
  /** The handler, given only what it uses. */
  readonly handler: (dependencies: Dependencies) => GrantHandler;
}

/**
 * Ledger event shapes. The ledger is append-only: a token's life is the sequence of its events
 * (issued or exchanged, introspected, revoked), and every refused request leaves a rejection event.
 */

/** How a token is sender-constrained: RFC 8705 `cnf.x5t#S256`, RFC 9449 `cnf.jkt`, or not at all. */
export type TokenBinding =
  | { method: 'mtls'; thumbprint: string }
  | { method: 'dpop'; thumbprint: string }
  | { method: 'bearer' };

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
  /** Token exchange: the subject token's id, and the `act` claim of the new token. */
  parentTokenId?: string;
  act?: Record<string, unknown>;
}

/** Facts about the request an event came from. */
export interface RequestFacts {
  requestId: string;
  sourceAddress: string | undefined;
  instanceId: string;
}

export type LedgerEventType =
  | 'token.issued'
  | 'token.exchanged'
  | 'token.revoked'
  | 'token.introspected'
  | 'request.rejected'
  | 'client.suspended'
  | 'client.resumed';

/**
 * An access token as the client holds it: the value, how it is presented, and what it was checked to be.
 *
 * @module
 */
import type { JWTPayload } from 'jose';

/** A token the client obtained and checked against what it asked for. */
export interface AccessToken {
  /** The `access_token` value; send it only to {@link AccessToken.resource}. */
  readonly value: string;
  /** `DPoP` for a DPoP-bound token (RFC 9449 §5), otherwise `Bearer` (certificate-bound tokens too, RFC 8705 §3). */
  readonly type: 'Bearer' | 'DPoP';
  /** The resource it was requested for; for a JWT also its `aud`. */
  readonly resource: string;
  /** The granted scopes (a subset of the requested ones), sorted. */
  readonly scopes: readonly string[];
  /** When the request for it was sent (epoch ms): its lifetime counts from here, never from the answer. */
  readonly obtainedAt: number;
  /**
   * When it expires (epoch ms): the earliest of `expires_in`, a JWT's `exp` and, for an exchanged
   * token, the subject token's expiry. `undefined` when the server said nothing about its lifetime;
   * such a token is handed to the callers of its one request and never cached.
   */
  readonly expiresAt: number | undefined;
  /** The decoded, unverified payload of a JWT access token; `undefined` for an opaque one. */
  readonly claims: JWTPayload | undefined;
}

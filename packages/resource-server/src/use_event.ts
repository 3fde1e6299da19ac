/**
 * What a verifier reports about one presentation (docs/use-reports.md): the outcome, and for a
 * refusal the reason and what the token *claimed* to be. Never the token, never the proof, never a
 * certificate: token ids (`jti`) and client ids only, as in Tether's ledger.
 *
 * @module
 */
import type { BindingKind } from './binding.js';
import type { VerifierError, VerifierErrorCode } from './errors.js';
import { decodeJsonObject, type JsonObject } from './compact_jws.js';
import { useRefusalReason, type UseRefusalReason } from './use_reasons.js';
import type { AccessTokenClaims } from './verify_access_token.js';

/** How the presentation was bound, in the vocabulary of Tether's ledger. */
export type UseBinding = 'mtls' | 'dpop' | 'bearer';

/** One presentation as a verifier saw it. */
export interface UseEvent {
  readonly outcome: 'accepted' | 'refused';
  /** Refused only. */
  readonly reason?: UseRefusalReason;
  /** Refused only: the verifier's precise code. */
  readonly code?: VerifierErrorCode;
  /** The token's `jti`: verified when accepted, as claimed when refused (absent when unreadable). */
  readonly tokenId?: string;
  readonly clientId?: string;
  /** The `aud` the token claimed, only when it is not this API's. */
  readonly tokenAudience?: string;
  /** The scopes the route required. */
  readonly scopesRequired: readonly string[];
  readonly binding?: UseBinding;
  /** Epoch milliseconds. */
  readonly occurredAt: number;
}

/** Where the verifier hands its outcomes; {@link createUseReporter}'s reporter is one. */
export interface UseRecorder {
  /** Must not throw or block (the verifier calls it on the request path). */
  record(event: UseEvent): void;
}

/** Longest claimed `jti`/`client_id`/`aud` that is reported; longer ones are left out, not cut. */
export const MAX_CLAIMED_LENGTH = 256;

const claimed = (value: unknown): string | undefined =>
  typeof value === 'string' && value.length > 0 && value.length <= MAX_CLAIMED_LENGTH ? value : undefined;

/**
 * The payload of a compact JWS, read without verifying anything: only to say what a refused token
 * claimed. `undefined` when it does not parse (the event then names no token).
 */
export function unverifiedPayloadOf(token: string): JsonObject | undefined {
  const segments = token.split('.');
  if (segments.length !== 3 || segments[1] === undefined || segments[1] === '') return undefined;
  return decodeJsonObject(segments[1]);
}

function bindingOf(binding: BindingKind): UseBinding {
  if (binding === 'none') return 'bearer';
  // A DPoP-bound token sent over a connection with a certificate: the token is DPoP's.
  return binding === 'mtls' ? 'mtls' : 'dpop';
}

/** The event of an accepted presentation. */
export function acceptedUse(claims: AccessTokenClaims, binding: BindingKind, requiredScopes: readonly string[] | undefined, occurredAt: number): UseEvent {
  return {
    outcome: 'accepted',
    tokenId: claimed(claims.jti),
    clientId: claimed(claims.client_id),
    scopesRequired: requiredScopes ?? [],
    binding: bindingOf(binding),
    occurredAt,
  };
}

/**
 * The event of a refused presentation. `token` is the presented token when one was parsed out of
 * `Authorization`; its payload is read only to name the token (`jti`, `client_id`) and an audience
 * that is not `audience` (a token for API A presented at API B).
 */
export function refusedUse(
  error: VerifierError,
  presented: { token: string | undefined; audience: string; requiredScopes: readonly string[] | undefined; occurredAt: number },
): UseEvent {
  const payload = presented.token === undefined ? undefined : unverifiedPayloadOf(presented.token);
  const aud = claimed(payload?.aud);
  const cnf = payload?.cnf as Record<string, unknown> | undefined;
  return {
    outcome: 'refused',
    reason: useRefusalReason(error.code),
    code: error.code,
    tokenId: claimed(payload?.jti),
    clientId: claimed(payload?.client_id),
    ...(aud !== undefined && aud !== presented.audience ? { tokenAudience: aud } : {}),
    scopesRequired: presented.requiredScopes ?? [],
    ...(payload === undefined ? {} : { binding: typeof cnf?.jkt === 'string' ? 'dpop' : typeof cnf?.['x5t#S256'] === 'string' ? 'mtls' : 'bearer' }),
    occurredAt: presented.occurredAt,
  };
}

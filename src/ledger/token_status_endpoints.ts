import type { Knex } from 'knex';
import type { Next } from 'koa';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { recordIntrospection, type LedgerEventInput } from './append_event.js';
import type { RequestFacts, TokenRecord } from './events.js';
import { introspectionVerdict } from './introspection_verdict.js';
import { findTokenStanding } from './lineage.js';
import type { OwnTokenVerifier, PresentedToken } from '../keys/own_tokens.js';
import { forgetRejection, rememberedRejection, rememberRejection, type Rejection } from './rejections.js';
import { revokeTokens } from './revoke_tokens.js';
import { revocationRefusal } from '../oauth/revocation_policy.js';
import { oauthErrorOf, type OAuthError } from '../oauth/error_boundary.js';
import { DatabaseFailure, Refusal } from '../oauth/refusal.js';

/**
 * Tether's answers at oidc-provider's introspection (RFC 7662) and revocation (RFC 7009) endpoints,
 * for JWT and opaque access tokens alike, from the ledger.
 *
 * oidc-provider authenticates the client and then, for a JWT, refuses with `unsupported_token_type`
 * (it only knows tokens stored in its adapter); for an opaque token it answers from its adapter. This
 * middleware runs after the route and replaces the answer whenever the client was authenticated —
 * that is, when the route finished, or failed with the `unsupported_token_type` its
 * rejectStructuredTokens step throws only after client authentication. Every other error (client
 * authentication, missing `token`) is oidc-provider's answer and stays.
 */

export interface TokenStatusDependencies {
  knex: Knex;
  verifier: OwnTokenVerifier;
  issuer: string;
  /** Client ids allowed to introspect tokens whose audience is `resource` (config: resources[].introspectors), for this request. */
  introspectorsOf(resource: string, ctx: KoaContextWithOIDC): readonly string[];
  logger: Logger;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
}

function clientWasAuthenticated(ctx: KoaContextWithOIDC): boolean {
  const rejection = rememberedRejection(ctx);
  if (!rejection) return ctx.status === 200 && Boolean(ctx.oidc.client);
  return rejection.error instanceof errors.UnsupportedTokenType && Boolean(ctx.oidc.client);
}

function tokenFactsOf(presented: PresentedToken, record: TokenRecord | undefined): Rejection['token'] {
  if (presented.kind === 'unrecognized') return undefined;
  return { tokenId: presented.tokenId, tokenFormat: presented.kind, clientId: record?.clientId, resource: record?.resource };
}

/** RFC 6749 §5.2 body; the rejection (with its private reason) goes to the ledger. */
function refuse(ctx: KoaContextWithOIDC, refusal: Refusal | OAuthError, token?: Rejection['token']): void {
  const error = refusal instanceof Refusal ? oauthErrorOf(refusal) : refusal;
  ctx.status = error.statusCode;
  ctx.type = 'json';
  ctx.body = { error: error.error, error_description: error.error_description };
  rememberRejection(ctx, { error, token });
}

/** The database could not answer: 503 temporarily_unavailable (the HTTP layer adds Retry-After), never 500. */
function refuseUnavailable(ctx: KoaContextWithOIDC, cause: unknown): void {
  refuse(ctx, new DatabaseFailure(cause, 'token status is not available right now; retry later'));
}

function eventFieldsOf(record: TokenRecord | undefined, presented: PresentedToken): Omit<LedgerEventInput, 'type'> {
  if (!record) return presented.kind === 'unrecognized' ? {} : { tokenId: presented.tokenId, tokenFormat: presented.kind };
  return {
    tokenId: record.tokenId,
    tokenFormat: record.format,
    clientId: record.clientId,
    resource: record.resource,
    scope: record.scope.join(' '),
    binding: record.binding,
    expiresAt: record.expiresAt,
    parentTokenId: record.parentTokenId,
  };
}

export function tokenStatusEndpoints(deps: TokenStatusDependencies) {
  async function lookUp(ctx: KoaContextWithOIDC) {
    const presented = await deps.verifier.identify(ctx.oidc.params!.token as string);
    const standing = presented.kind === 'unrecognized' ? undefined : await findTokenStanding(deps.knex, presented.tokenId);
    return { presented, record: standing?.record, revokedAncestorId: standing?.revokedAncestorId };
  }

  /** RFC 7662 §2.2: `active: true` with the token's facts, or only `active: false`; recorded either way. */
  async function introspect(ctx: KoaContextWithOIDC): Promise<void> {
    const callerId = ctx.oidc.client!.clientId;
    const { presented, record, revokedAncestorId } = await lookUp(ctx);
    const verdict = introspectionVerdict({
      presented, record, revokedAncestorId, callerId, introspectorsOf: (resource) => deps.introspectorsOf(resource, ctx), issuer: deps.issuer, now: new Date(),
    });
    await recordIntrospection(deps.knex, {
      type: 'token.introspected',
      ...eventFieldsOf(record, presented),
      actor: callerId,
      active: verdict.active,
      details: verdict.active ? { active: true } : { active: false, reason: verdict.reason },
    }, deps.requestFactsOf(ctx));
    ctx.status = 200;
    ctx.type = 'json';
    ctx.body = verdict.active ? verdict.response : { active: false };
  }

  /**
   * RFC 7009 §2.1: only the client the token was issued to may revoke it; revoking it revokes every
   * token exchanged from it. §2.2: an invalid or unknown token is answered 200 all the same.
   */
  async function revoke(ctx: KoaContextWithOIDC): Promise<void> {
    const callerId = ctx.oidc.client!.clientId;
    const { presented, record } = await lookUp(ctx);
    const refusal = record && revocationRefusal(callerId, record.clientId);
    if (refusal) {
      refuse(ctx, refusal, tokenFactsOf(presented, record));
      return;
    }
    if (record) {
      await revokeTokens(deps.knex, { tokenIds: [record.tokenId] }, { actor: callerId, reason: 'revoked by its client at the revocation endpoint' }, deps.requestFactsOf(ctx));
    }
    ctx.status = 200;
    ctx.body = '';
  }

  return async function tokenStatusEndpointsMiddleware(ctx: KoaContextWithOIDC, next: Next): Promise<void> {
    await next();
    const route = ctx.oidc?.route;
    if (route !== 'introspection' && route !== 'revocation') return;
    if (ctx.status >= 500) {
      // oidc-provider's only I/O on these routes is its adapter, i.e. the database.
      refuseUnavailable(ctx, rememberedRejection(ctx)?.error);
      return;
    }
    if (!clientWasAuthenticated(ctx)) return;
    forgetRejection(ctx);
    try {
      await (route === 'introspection' ? introspect(ctx) : revoke(ctx));
    } catch (error) {
      if (error instanceof Refusal || error instanceof errors.OIDCProviderError) refuse(ctx, error as Refusal | OAuthError);
      else {
        deps.logger.warn({ err: error, route }, 'token status unavailable');
        refuseUnavailable(ctx, error);
      }
    }
  };
}

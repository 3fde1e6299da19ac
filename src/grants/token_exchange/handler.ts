import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { OwnTokenVerifier } from '../../keys/own_tokens.js';
import { ParentRefusedError } from '../../ledger/record_issuance.js';
import { PolicyError } from '../../provider/resource_policy.js';
import type { GrantContext } from '../grant_context.js';
import { bindToken, mintAccessToken, oauthErrorOf, recordIssuance, requireActiveClient, respondWithToken, tetherClientOf } from '../issuance_steps.js';
import { decideExchange, InvalidPresentedToken } from './exchange_policy.js';
import { parseExchangeRequest, TOKEN_TYPE } from './parse_request.js';
import { isExternalSubjectToken, resolveExternalSubjectToken } from '../../federation/subject_tokens.js';
import { presentedKeysOf } from './presented_keys.js';
import { resolvePresentedToken } from './resolve_subject.js';

/**
 * OAuth 2.0 Token Exchange (RFC 8693) as a custom oidc-provider grant. A service that received a
 * token does not forward it: it exchanges it here for a new one — another audience, equal or fewer
 * scopes, never a later expiry, bound to its own key, with `act` saying who acts for whom.
 *
 * client → parse request (§2.1) → resolve subject and actor tokens → exchange policy (pure) →
 * sender constraint of the new token → mint → ledger (`token.exchanged`, parent = subject token) →
 * response (§2.2.1).
 */
export function tokenExchangeHandler(grant: GrantContext, ownTokens: OwnTokenVerifier) {

  return async function tokenExchange(ctx: KoaContextWithOIDC): Promise<void> {
    const client = tetherClientOf(grant, ctx);
    await requireActiveClient(grant, client);

    const request = await refusing(() => parseExchangeRequest(ctx.oidc.params!));
    // Federation: a trusted external issuer's token (docs/federation.md); anything else must be Tether's own.
    const subject = await refusing(() => isExternalSubjectToken(grant.federation.verifier, request.subject.value)
      ? resolveExternalSubjectToken(grant.federation.verifier, request.subject.value)
      : resolvePresentedToken(grant, ownTokens, request.subject, 'subject_token'));
    const actor = request.actor && await refusing(() => resolvePresentedToken(grant, ownTokens, request.actor!, 'actor_token'));
    const presented = await presentedKeysOf(grant, ctx, actor ? [subject, actor] : [subject]);

    const { resources, config } = grant.snapshotOf(ctx);
    const decision = await refusing(() => decideExchange({
      request, subject, actor, client, presented,
      registry: resources,
      maxChainDepth: config.exchange.maxChainDepth,
      now: new Date(),
    }));

    const binding = await bindToken(grant, ctx, client, decision.resource);
    const issued = await mintAccessToken(grant, ctx, {
      client,
      resource: decision.resource,
      scopes: decision.scopes,
      binding,
      lifetimeSeconds: decision.lifetimeSeconds,
      notAfter: decision.notAfter,
      subject: decision.subject,
      act: decision.act as Record<string, unknown> | undefined,
      // An external subject token has no ledger record: the new token is a root, traced by `external`.
      parentTokenId: decision.external ? undefined : subject.tokenId,
      claims: decision.claims,
      external: decision.external,
    });
    // The record re-checks the subject token under lock: a revocation that committed meanwhile wins.
    await refusing(() => recordIssuance(grant, ctx, { type: 'token.exchanged', issued }));
    // RFC 8693 §2.2.1: issued_token_type is REQUIRED.
    respondWithToken(ctx, issued, { issued_token_type: TOKEN_TYPE.accessToken });
  };
}

/** Runs a step and turns its refusal into the OAuth error the client sees (detail stays private). */
async function refusing<T>(step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof InvalidPresentedToken) throw invalidGrant(error);
    if (error instanceof PolicyError) throw oauthErrorOf(error);
    if (error instanceof ParentRefusedError) throw refusedBySubject(error);
    throw error;
  }
}

/** The issuance statement refused the new token because of its subject token (ledger/record_issuance.ts). */
function refusedBySubject(refusal: ParentRefusedError) {
  if (refusal.refusal === 'lineage_too_deep') {
    return oauthErrorOf(new PolicyError('invalid_request', 'the exchange lineage of the subject token is too long to exchange it again', refusal.message));
  }
  return invalidGrant(new InvalidPresentedToken('subject_token', refusal.message));
}

/**
 * An invalid, expired, revoked, foreign or unpresentable subject / actor token → `invalid_grant`
 * (RFC 6749 §5.2: the grant "is invalid, expired, revoked … or was issued to another client"), the
 * code Spring Authorization Server and most servers use. RFC 8693 §2.2.2 literally says
 * `invalid_request` here; docs/token-exchange.md records the choice.
 */
function invalidGrant(refusal: InvalidPresentedToken) {
  const error = new errors.InvalidGrant(refusal.reason);
  error.error_description = refusal.description;
  return error;
}

import type { KoaContextWithOIDC } from 'oidc-provider';
import { isExternalSubjectToken, resolveExternalSubjectToken } from '../../federation/subject_tokens.js';
import type { ExternalTokenVerifier } from '../../federation/verify_external_token.js';
import { ParentRefusedError } from '../../ledger/record_issuance.js';
import { Refusal } from '../../oauth/refusal.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../../oauth/token_exchange_urns.js';
import { selectBinding } from '../resource_policy.js';
import type { Grant } from '../grant.js';
import { recordIssuance, requireActiveClient, respondWithToken, tetherClientOf } from '../issuance_steps.js';
import { decideExchange, InvalidPresentedToken } from './exchange_policy.js';
import { parseExchangeRequest } from './parse_request.js';
import { presentedKeysOf } from './presented_keys.js';
import { LINEAGE_TOO_DEEP, resolvePresentedToken, type PresentedTokenDependencies } from './resolve_subject.js';

/** What the token exchange handler uses. */
export interface TokenExchangeDependencies extends PresentedTokenDependencies {
  /** Federation: tokens of the trusted external issuers, exchangeable as subject tokens (docs/federation.md). */
  externalTokens: ExternalTokenVerifier;
}

/**
 * OAuth 2.0 Token Exchange (RFC 8693) as a custom oidc-provider grant. A service that received a
 * token does not forward it: it exchanges it here for a new one — another audience, equal or fewer
 * scopes, never a later expiry, bound to its own key, with `act` saying who acts for whom.
 *
 * client → parse request (§2.1) → resolve subject and actor tokens → exchange policy (pure) →
 * sender constraint of the new token → mint → ledger (`token.exchanged`, parent = subject token) →
 * response (§2.2.1).
 */
export function tokenExchangeHandler(deps: TokenExchangeDependencies) {
  return async function tokenExchange(ctx: KoaContextWithOIDC): Promise<void> {
    const { clients, resources, config } = deps.snapshotOf(ctx);
    const client = tetherClientOf(clients, ctx);
    await requireActiveClient(deps.ledger, client);

    const request = parseExchangeRequest(ctx.oidc.params!);
    // Federation: a trusted external issuer's token (docs/federation.md); anything else must be Tether's own.
    const subject = isExternalSubjectToken(deps.externalTokens, request.subject.value)
      ? await resolveExternalSubjectToken(deps.externalTokens, request.subject.value)
      : await resolvePresentedToken(deps, request.subject, 'subject_token');
    const actor = request.actor && await resolvePresentedToken(deps, request.actor, 'actor_token');
    const presented = await presentedKeysOf(deps.binder, ctx, actor ? [subject, actor] : [subject]);

    const decision = decideExchange({
      request, subject, actor, client, presented,
      registry: resources,
      maxChainDepth: config.exchange.maxChainDepth,
      now: new Date(),
    });

    const binding = await deps.binder.bindNewToken(ctx, selectBinding(client, decision.resource));
    const issued = await deps.mint.mintAccessToken(ctx, {
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
    await recordIssuance(deps, ctx, { type: tokenExchangeGrant.eventType, issued }).catch(refusedBySubject);
    // RFC 8693 §2.2.1: issued_token_type is REQUIRED.
    respondWithToken(ctx, issued, { issued_token_type: TOKEN_TYPE.accessToken });
  };
}

/**
 * The issuance statement refused the new token because of its subject token (ledger/record_issuance.ts).
 * An invalid, expired, revoked, foreign or unpresentable subject / actor token is `invalid_grant`
 * (RFC 6749 §5.2: the grant "is invalid, expired, revoked … or was issued to another client"), the
 * code Spring Authorization Server and most servers use. RFC 8693 §2.2.2 literally says
 * `invalid_request` here; docs/token-exchange.md records the choice.
 */
function refusedBySubject(error: unknown): never {
  if (!(error instanceof ParentRefusedError)) throw error;
  if (error.refusal === 'lineage_too_deep') throw new Refusal('invalid_request', LINEAGE_TOO_DEEP, error.message);
  throw new InvalidPresentedToken('subject_token', error.message);
}

/** OAuth 2.0 Token Exchange (RFC 8693), as the registry lists it. */
export const tokenExchangeGrant: Grant<TokenExchangeDependencies> = {
  type: TOKEN_EXCHANGE_GRANT_TYPE,
  // RFC 8693 §2.1; oidc-provider strips every other parameter before the handler.
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
  // May repeat at the HTTP level, so that policy (not the parser) decides: see parse_request.ts selectTargetParameter.
  duplicableParameters: ['resource', 'audience'],
  eventType: 'token.exchanged',
  docs: 'docs/token-exchange.md',
  handler: tokenExchangeHandler,
};

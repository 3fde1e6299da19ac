import type { KoaContextWithOIDC } from 'oidc-provider';
import { selectResource, selectScopes } from '../provider/resource_policy.js';
import type { GrantContext } from './grant_context.js';
import { bindToken, mintAccessToken, recordIssuance, requireActiveClient, respondWithToken, tetherClientOf, withPolicyErrors } from './issuance_steps.js';

/**
 * `client_credentials` (RFC 6749 §4.4) the Tether way, replacing oidc-provider's built-in handler so
 * that the policy is ours and the steps read top to bottom:
 * client → resource (RFC 8707) → scopes → sender constraint (RFC 8705 / RFC 9449) → mint → ledger → response.
 */
export function clientCredentialsHandler(grant: GrantContext) {
  return async function clientCredentials(ctx: KoaContextWithOIDC): Promise<void> {
    const client = tetherClientOf(grant, ctx);
    await requireActiveClient(grant, client);

    const { resource, scopes } = withPolicyErrors(() => {
      const chosen = selectResource(ctx.oidc.params!.resource as string | string[] | undefined, client, client.resources, grant.snapshotOf(ctx).resources);
      return { resource: chosen, scopes: selectScopes(ctx.oidc.params!.scope as string | undefined, client.resources[chosen.uri]!) };
    });

    const binding = await bindToken(grant, ctx, client, resource);
    const issued = await mintAccessToken(grant, ctx, { client, resource, scopes, binding, lifetimeSeconds: resource.lifetime });
    await recordIssuance(grant, ctx, { type: 'token.issued', issued });
    respondWithToken(ctx, issued);
  };
}

export const clientCredentialsParameters = ['scope', 'resource'];

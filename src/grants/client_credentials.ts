import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Grant } from './grant.js';
import { recordIssuance, requireActiveClient, respondWithToken, tetherClientOf, type IssuanceDependencies } from './issuance_steps.js';
import { selectBinding, selectResource, selectScopes } from './resource_policy.js';

/** What the client_credentials handler uses: the shared issuance steps' dependencies, nothing more. */
export type ClientCredentialsDependencies = IssuanceDependencies;

/**
 * `client_credentials` (RFC 6749 §4.4) the Tether way, replacing oidc-provider's built-in handler so
 * that the policy is ours and the steps read top to bottom:
 * client → resource (RFC 8707) → scopes → sender constraint (RFC 8705 / RFC 9449) → mint → ledger → response.
 */
export function clientCredentialsHandler(deps: ClientCredentialsDependencies) {
  return async function clientCredentials(ctx: KoaContextWithOIDC): Promise<void> {
    const { clients, resources } = deps.snapshotOf(ctx);
    const client = tetherClientOf(clients, ctx);
    await requireActiveClient(deps.ledger, client);

    const resource = selectResource(ctx.oidc.params!.resource as string | string[] | undefined, client, client.resources, resources);
    const scopes = selectScopes(ctx.oidc.params!.scope as string | undefined, client.resources[resource.uri]!);

    const binding = await deps.binder.bindNewToken(ctx, selectBinding(client, resource));
    const issued = await deps.mint.mintAccessToken(ctx, { client, resource, scopes, binding, lifetimeSeconds: resource.lifetime });
    await recordIssuance(deps, ctx, { type: clientCredentialsGrant.eventType, issued });
    respondWithToken(ctx, issued);
  };
}

export const clientCredentialsGrant: Grant<ClientCredentialsDependencies> = {
  type: 'client_credentials',
  parameters: ['scope', 'resource'],
  // RFC 8707 §2: `resource` may repeat at the HTTP level so that policy, not the parser, refuses it.
  duplicableParameters: ['resource'],
  eventType: 'token.issued',
  docs: 'README.md#your-first-token',
  handler: clientCredentialsHandler,
};

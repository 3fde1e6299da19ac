import type { Knex } from 'knex';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import { installFederatedClientAuthentication } from './client_authentication.js';
import type { ExternalIdentity } from './federation_errors.js';
import type { IssuerKeyOptions } from './issuer_keys.js';
import { externalTokenVerifier, type ExternalTokenVerifier } from './verify_external_token.js';

/** Workload identity federation as the token path uses it (docs/federation.md). */
export interface Federation {
  /** Verifies tokens of the configured trusted issuers. */
  verifier: ExternalTokenVerifier;
  /** The external identity that authenticated this request's client (federated client authentication), if any. */
  clientIdentityOf(ctx: KoaContextWithOIDC): ExternalIdentity | undefined;
}

/**
 * Reads the trusted issuers' key files (a missing or broken file fails the start), and installs
 * federated client authentication into the provider. Remote keys are fetched when first needed.
 */
export async function startFederation(provider: Provider, deps: {
  config: Pick<TetherConfig, 'issuer' | 'federation'>;
  /** The configured clients for a request (its configuration snapshot: a reload changes them). */
  clientsOf(ctx: KoaContextWithOIDC | undefined): ReadonlyMap<string, ClientConfig>;
  knex: Knex;
  keys?: IssuerKeyOptions;
}): Promise<Federation> {
  const verifier = await externalTokenVerifier(deps.config, deps.keys);
  const clientAuthentication = installFederatedClientAuthentication(provider, { verifier, clientsOf: deps.clientsOf, knex: deps.knex });
  return { verifier, clientIdentityOf: (ctx) => clientAuthentication.identityOf(ctx) };
}

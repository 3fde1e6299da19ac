import type { Knex } from 'knex';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import type { Federation } from '../federation/federation.js';
import type { RequestFacts } from '../ledger/events.js';
import type { IssuanceLedger } from '../ledger/issuance_recorder.js';
import type { ResourceRegistry } from '../provider/resource_policy.js';

/** Everything a grant handler needs, passed explicitly (no globals). */
export interface GrantContext {
  provider: Provider;
  config: TetherConfig;
  knex: Knex;
  resources: ResourceRegistry;
  clients: ReadonlyMap<string, ClientConfig>;
  ledger: IssuanceLedger;
  instanceId: string;
  /** Trusted external issuers: federated client authentication and subject tokens (src/federation/). */
  federation: Federation;
  /** The caller's client certificate (TLS socket or trusted proxy header), resolved before the provider runs. */
  certificateOf(ctx: KoaContextWithOIDC): { der: Buffer; thumbprint: string } | undefined;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
}

import type { Knex } from 'knex';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import type { RequestFacts } from '../ledger/events.js';
import type { IssuanceLedger } from '../ledger/issuance_recorder.js';
import type { ResourceRegistry } from '../provider/resource_policy.js';
import type { ProofReplayCheck } from '../storage/dpop_replay.js';

/** Everything a grant handler needs, passed explicitly (no globals). */
export interface GrantContext {
  provider: Provider;
  config: TetherConfig;
  knex: Knex;
  resources: ResourceRegistry;
  clients: ReadonlyMap<string, ClientConfig>;
  ledger: IssuanceLedger;
  /** RFC 9449 §11.1: DPoP proofs are single-use across every instance (batched statements). */
  dpopProofs: ProofReplayCheck;
  instanceId: string;
  /** The caller's client certificate (TLS socket or trusted proxy header), resolved before the provider runs. */
  certificateOf(ctx: KoaContextWithOIDC): { der: Buffer; thumbprint: string } | undefined;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
}

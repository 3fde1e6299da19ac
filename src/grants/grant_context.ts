import type { Knex } from 'knex';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { Federation } from '../federation/federation.js';
import type { RequestFacts } from '../ledger/events.js';
import type { IssuanceLedger } from '../ledger/issuance_recorder.js';
import type { ConfigSnapshot } from '../provider/config_snapshot.js';
import type { ProofReplayCheck } from '../storage/dpop_replay.js';

/** Everything a grant handler needs, passed explicitly (no globals). */
export interface GrantContext {
  provider: Provider;
  /**
   * The configuration the request runs with (clients, resources, policy), read once when it
   * arrived: a reload while it runs does not change it (provider/config_snapshot.ts).
   */
  snapshotOf(ctx: KoaContextWithOIDC): ConfigSnapshot;
  knex: Knex;
  ledger: IssuanceLedger;
  /** RFC 9449 §11.1: DPoP proofs are single-use across every instance (batched statements). */
  dpopProofs: ProofReplayCheck;
  instanceId: string;
  /** Trusted external issuers: federated client authentication and subject tokens (src/federation/). */
  federation: Federation;
  /** The caller's client certificate (TLS socket or trusted proxy header), resolved before the provider runs. */
  certificateOf(ctx: KoaContextWithOIDC): { der: Buffer; thumbprint: string } | undefined;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
}

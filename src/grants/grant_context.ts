import type { Knex } from 'knex';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import type { IssuedToken, RequestFacts } from '../ledger/events.js';
import type { ResourceRegistry } from '../provider/resource_policy.js';

/** Records a token in the ledger; resolves only once the event is committed. */
export interface IssuanceRecorder {
  recordIssuance(event: { type: 'token.issued' | 'token.exchanged'; issued: IssuedToken }, facts: RequestFacts): Promise<void>;
  /** Whether a client is suspended (a suspended client gets no new tokens). */
  isClientSuspended(clientId: string): Promise<boolean>;
}

/** Everything a grant handler needs, passed explicitly (no globals). */
export interface GrantContext {
  provider: Provider;
  config: TetherConfig;
  knex: Knex;
  resources: ResourceRegistry;
  clients: ReadonlyMap<string, ClientConfig>;
  ledger: IssuanceRecorder;
  instanceId: string;
  /** The caller's client certificate (TLS socket or trusted proxy header), resolved before the provider runs. */
  certificateOf(ctx: KoaContextWithOIDC): { der: Buffer; thumbprint: string } | undefined;
  requestFactsOf(ctx: KoaContextWithOIDC): RequestFacts;
}

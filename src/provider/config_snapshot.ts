import { errors, type Client, type Provider } from 'oidc-provider';
import { ConfigError } from '../config/load_config.js';
import type { ClientConfig, ResourceConfig, TetherConfig } from '../config/schema.js';
import { clientMetadataOf } from './client_metadata.js';
import { buildProviderClient } from './internals.js';

/**
 * The configuration one request runs with, immutable. A reload (docs/operations.md#configuration-reload)
 * builds a new snapshot and swaps it in at once; a request reads the current one once, at its start,
 * and keeps it to the end, so that its client lookup, policy and introspection rules all come from
 * one configuration and an in-flight request is never cut by a reload.
 */
export interface ConfigSnapshot {
  readonly config: TetherConfig;
  readonly clients: ReadonlyMap<string, ClientConfig>;
  readonly resources: ResourceRegistry;
  /** oidc-provider's Client of each configured client (its authentication metadata and key stores). */
  readonly providerClients: ReadonlyMap<string, Client>;
  /** 1 at start, one more per applied reload (logged with it). */
  readonly generation: number;
}

/** Registered resources by exact URI string (RFC 8707 §2: compared as registered, no normalisation). */
export type ResourceRegistry = ReadonlyMap<string, ResourceConfig>;

export function resourceRegistry(config: TetherConfig): ResourceRegistry {
  return new Map(config.resources.map((resource) => [resource.uri, resource]));
}

/** Where the current snapshot is kept; `current()` is what a request starting now gets. */
export interface LiveConfig {
  current(): ConfigSnapshot;
  replace(next: ConfigSnapshot): void;
}

export function createLiveConfig(): LiveConfig {
  let current: ConfigSnapshot | undefined;
  return {
    current() {
      if (!current) throw new Error('no configuration snapshot installed yet');
      return current;
    },
    replace(next) {
      current = next;
    },
  };
}

/**
 * The snapshot of `config` for `provider`, whose clients may use `grantTypes` (grants/registry.ts). Each client is built as oidc-provider builds its own
 * (its schema validates the metadata); every refusal is reported at once as configuration problems
 * naming the client. A client whose metadata did not change keeps its Client, and so the keys it
 * already fetched from a `jwksUri`.
 */
export function buildConfigSnapshot(
  provider: Provider,
  grantTypes: readonly string[],
  config: TetherConfig,
  previous?: ConfigSnapshot,
  source = 'configuration',
): ConfigSnapshot {
  const providerClients = new Map<string, Client>();
  const problems: string[] = [];
  config.clients.forEach((client, index) => {
    const metadata = clientMetadataOf(client, grantTypes);
    const unchanged = previous && JSON.stringify(previous.clients.get(client.id)) === JSON.stringify(client);
    const kept = unchanged ? previous.providerClients.get(client.id) : undefined;
    if (kept) {
      providerClients.set(client.id, kept);
      return;
    }
    try {
      providerClients.set(client.id, buildProviderClient(provider, metadata));
    } catch (error) {
      if (!(error instanceof errors.OIDCProviderError)) throw error;
      problems.push(`${source}: clients[${index}]: ${(error as { error_description?: string }).error_description ?? error.message}`);
    }
  });
  if (problems.length > 0) {
    const message = problems.length === 1 ? problems[0]! : `${source}: ${problems.length} problems\n${problems.map((problem) => `  ${problem.slice(source.length + 2)}`).join('\n')}`;
    throw new ConfigError(message, problems);
  }
  return {
    config,
    clients: new Map(config.clients.map((client) => [client.id, client])),
    resources: resourceRegistry(config),
    providerClients,
    generation: (previous?.generation ?? 0) + 1,
  };
}

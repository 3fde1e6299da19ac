import { randomUUID } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { dpopProofs } from '../binding/dpop.js';
import { tokenRequestProofCheck } from '../binding/dpop_token_proof.js';
import { isTrustedProxy } from '../binding/proxy_certificate.js';
import { tokenBinder } from '../binding/token_binder.js';
import { configErrorOfIssues } from '../config/load_config.js';
import { planReload } from '../config/reload_plan.js';
import { crossReferenceIssues, databaseTimeoutsMs, type ConfigIssue, type TetherConfig } from '../config/schema.js';
import { startFederation } from '../federation/federation.js';
import { loadSpiffeBundles } from '../federation/x509_svid.js';
import { adminApi } from '../admin/admin_api.js';
import { createAdminAuthenticator } from '../admin/authenticate.js';
import { adminConsole, loadConsoleFiles } from '../admin/console_files.js';
import { tokenMint } from '../grants/issuance_steps.js';
import { createReporterAuthenticator } from '../use_reports/reporter_authentication.js';
import { useReportEndpoint } from '../use_reports/use_report_endpoint.js';
import { GRANT_TYPES, registerGrants, type GrantDependencies } from '../grants/registry.js';
import { ensureClientStates } from '../ledger/client_states.js';
import { createIssuanceLedger } from '../ledger/issuance_recorder.js';
import { findTokenStanding } from '../ledger/lineage.js';
import { createRejectionAggregator, type RejectionAggregator } from '../ledger/rejection_aggregator.js';
import { listenForRejections, recordRejections } from '../ledger/rejections.js';
import { tokenStatusEndpoints } from '../ledger/token_status_endpoints.js';
import { startLiveSigningKeys, type LiveSigningKeys } from '../keys/live_signing_keys.js';
import { ownTokenVerifier } from '../keys/own_tokens.js';
import { describeUnsupportedAssertionAlg } from '../provider/client_assertion_alg.js';
import { loadServerSecret } from '../keys/server_secrets.js';
import { signingPolicyOf } from '../keys/signing_policy.js';
import { ALLOWED_JWS_ALGORITHMS } from '../provider/client_metadata.js';
import { buildConfigSnapshot, createLiveConfig, type ConfigSnapshot } from '../provider/config_snapshot.js';
import { createProvider } from '../provider/create_provider.js';
import { dpopNoncesOf, installSigningKeys } from '../provider/internals.js';
import { createAdapterFactory } from '../storage/adapter.js';
import { timedGrant } from '../observability/issuance_timing.js';
import type { TetherMetrics } from '../observability/metrics.js';
import { requestObservers } from '../observability/request_observers.js';
import type { Database } from '../storage/database.js';
import { isPgliteKnex } from '../storage/knex_kind.js';
import {
  discoveryAdditions, healthEndpoints, pinnedSnapshotOf, requestContext, requestFactsOf, resolveCallerCertificate,
  retryAfterOnUnavailable, servedOriginOnly,
} from './middleware.js';
import { servedOriginsOf } from './request_origin.js';
import { servedRoutesOnly } from './served_routes.js';

export interface TetherAppOptions {
  config: TetherConfig;
  database: Database;
  logger: Logger;
  /** PEM bundle of CAs that tls_client_auth certificates must chain to (also given to the TLS listener). */
  clientCaPem?: string;
  instanceId?: string;
  /**
   * `tether dev`: the admin API's local credential (admin/dev_credential.ts); the admin API is
   * served when this is given or `admin.enabled` is true.
   */
  adminDevSecret?: string;
}

/** Tether's request handling: oidc-provider with Tether's grants and middleware, over one database. */
export interface TetherApp {
  provider: Provider;
  /** A node:http request listener, for any number of listeners. */
  callback: ReturnType<Provider['callback']>;
  instanceId: string;
  /** The verification keys published at jwks_uri now. */
  readonly publicJwks: JSONWebKeySet;
  /** The signing keys, kept equal to the database while the app runs (keys/live_signing_keys.ts). */
  keys: LiveSigningKeys;
  /** Refusals nobody authenticated for, counted per window (`flush()` ends the window now). */
  unauthenticatedRejections: RejectionAggregator;
  /** Ends the admin API's open streams (ledger follow, SSE), so that a graceful stop need not wait for them. */
  endAdminStreams(): void;
  /** Prometheus metrics, when `metrics.listener` is not `off` (served by the app itself for `http`/`https`). */
  metrics: TetherMetrics | undefined;
  /** The configuration requests starting now run with. */
  configuration(): ConfigSnapshot;
  /**
   * Replaces clients, resources and policy with those of `next` for every request that starts from
   * now on; requests in flight finish with the configuration they started with. What only a restart
   * changes keeps its running value and is returned as `needsRestart` (config/reload_plan.ts).
   * Throws ConfigError (every problem, each naming its path) and changes nothing when `next` cannot
   * run; a database error likewise changes nothing. Reloads run one at a time.
   */
  reconfigure(next: TetherConfig, options?: ReconfigureOptions): Promise<Reconfigured>;
  /** Stops following key changes and writes what is still counted; call before closing the database. */
  close(): Promise<void>;
}

export interface ReconfigureOptions {
  /** Names the file in error messages, as at start. */
  source?: string;
  /** Checks of the configuration that would run beyond those of every configuration (`tether start`'s). */
  checks?: (config: TetherConfig) => ConfigIssue[];
}

export interface Reconfigured {
  generation: number;
  clients: number;
  resources: number;
  /** Changed paths that keep their running value until a restart (names only). */
  needsRestart: string[];
}

/** `run` with calls queued: each starts once the one before it has settled. */
function oneAtATime<A extends unknown[], R>(run: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  let last: Promise<unknown> = Promise.resolve();
  return (...args) => {
    const result = last.then(() => run(...args));
    last = result.catch(() => undefined);
    return result;
  };
}

/**
 * Wires the token path of DESIGN.md: keys from the database, oidc-provider configured for Tether,
 * Tether's grant handlers, and the middleware that runs around them.
 */
export async function createTetherApp(options: TetherAppOptions): Promise<TetherApp> {
  const { config, database, logger } = options;
  const { knex } = database;
  const instanceId = options.instanceId ?? randomUUID();
  const waits = databaseTimeoutsMs(config.database);
  // SPIFFE bundles are read at start, as trusted issuers' JWKS files are, before anything is running.
  const spiffeBundles = loadSpiffeBundles(config.federation.spiffe.trustDomains);

  const [keysStarted, secretLoaded, statesEnsured] = await Promise.allSettled([
    startLiveSigningKeys({ knex, policy: signingPolicyOf(config), logger }),
    loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: config.signing.encryptionSecret }),
    // The issuance statement locks the client's state row (ledger/record_issuance.ts), so every
    // configured client needs one (ledger/client_states.ts).
    ensureClientStates(knex, config.clients.map((client) => client.id)),
  ]);
  const failed = [keysStarted, secretLoaded, statesEnsured].find((step) => step.status === 'rejected');
  if (failed) {
    // The key feed holds a connection of its own: nothing may be left running when the start fails.
    if (keysStarted.status === 'fulfilled') await keysStarted.value.close();
    throw failed.reason;
  }
  const keys = (keysStarted as PromiseFulfilledResult<LiveSigningKeys>).value;
  const dpopNonceSecret = (secretLoaded as PromiseFulfilledResult<Buffer>).value;

  // Clients, resources and policy: one immutable snapshot per configuration, pinned by each request
  // as it arrives (requestContext) and swapped whole by a reload (reconfigure below).
  const live = createLiveConfig();
  const snapshotOf = (ctx: Parameters<typeof pinnedSnapshotOf>[0] | undefined) => (ctx && pinnedSnapshotOf(ctx)) || live.current();
  const provider = createProvider({
    config,
    snapshotOf,
    adapter: createAdapterFactory(knex),
    jwks: keys.current().jwks as never,
    dpopNonceSecret,
    grantTypes: GRANT_TYPES,
    spiffeBundles,
  });
  // Signing and the JWKS follow the database from now on: a key staged, activated or retired on
  // any instance (or by the CLI) reaches this one within seconds, without a restart.
  keys.subscribe((current) => installSigningKeys(provider, { signing: current.jwks.keys, published: current.publicJwks.keys }));

  let federation;
  try {
    // Clients come from the request's snapshot (a reload changes them); trusted issuers only at a restart.
    federation = await startFederation(provider, { config, clientsOf: (ctx) => snapshotOf(ctx).clients, knex });
  } catch (error) {
    await keys.close();
    throw error;
  }
  // PGlite runs its statements on this thread: gather each turn's requests into one statement.
  const batching = { queueLimit: config.database.queueLimit, queueTimeoutMs: waits.acquireTimeout, gather: isPgliteKnex(knex) ? 'turn' : 'now' } as const;
  const issuanceLedger = createIssuanceLedger(knex, { batching });
  // Access log and Prometheus metrics (observability/request_observers.ts).
  const observers = await requestObservers({
    config, logger, provider, knex,
    knownNamesOf: (ctx) => snapshotOf(ctx),
    issuanceQueue: () => issuanceLedger.queueDepth(),
    signingKeys: () => keys.current(),
    factsOf: (ctx) => requestFactsOf(ctx, instanceId),
  });
  const { metrics } = observers;

  // Tokens handed back to Tether (exchange, introspection, revocation) are checked against its own
  // published keys, including ones another instance began signing with that this one has not heard of yet.
  const ownTokens = ownTokenVerifier({ issuer: config.issuer, keys, algorithms: [...ALLOWED_JWS_ALGORITHMS] });
  const grantDependencies: GrantDependencies = {
    snapshotOf,
    ledger: issuanceLedger,
    mint: tokenMint(provider, config.signing.algorithm),
    binder: tokenBinder(dpopProofs({
      validate: tokenRequestProofCheck({
        algorithms: ALLOWED_JWS_ALGORITHMS,
        nonces: dpopNoncesOf(provider),
        requireNonce: (ctx) => snapshotOf(ctx).config.dpop.requireNonce,
      }),
    })),
    requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
    ownTokens,
    opaqueTokens: { find: (value, options) => provider.ClientCredentials.find(value, options) },
    standingOf: (tokenId) => findTokenStanding(knex, tokenId),
    externalTokens: federation.verifier,
    externalIdentityOf: (ctx) => federation.clientIdentityOf(ctx),
  };
  // Each grant's handler is timed per phase when metrics are on (observability/issuance_timing.ts).
  registerGrants(provider, grantDependencies, (type, handler) => timedGrant(metrics?.issuancePhase, type, handler));
  // Clients are validated against the grant types registered above, as oidc-provider does at first use.
  try {
    live.replace(buildConfigSnapshot(provider, GRANT_TYPES, config));
  } catch (error) {
    await keys.close();
    throw error;
  }

  // Koa reports errors of the request or response stream (a client that timed out, aborted or
  // reset) here, by default with console.error: a client could fill stderr at will.
  (provider.on as (event: 'error', listener: (error: Error & { code?: string }) => void) => Provider)(
    'error', (error) => logger.debug({ message: error.message, code: error.code }, 'request stream error'));
  // Ledger: rejections of the token, introspection and revocation endpoints are remembered on the
  // request and recorded after the route answered (recordRejections).
  listenForRejections(provider);
  const unauthenticatedRejections = createRejectionAggregator({
    knex, logger, instanceId, windowMs: config.ledger.rejectionWindow * 1000, maxKinds: config.ledger.rejectionKinds,
  });
  const trustedHops = { trustedProxies: config.trustedProxies };
  const proxy = config.trustedProxies.length > 0
    ? { trustedProxies: config.trustedProxies, header: config.clientCertHeader, ca: options.clientCaPem }
    : undefined;
  const adminClosing = new AbortController();
  const adminServed = options.adminDevSecret !== undefined || config.admin.enabled === true;
  const admin = adminServed ? [
    adminApi({
      config, knex, logger,
      currentConfig: (ctx) => snapshotOf(ctx).config,
      authenticate: createAdminAuthenticator({ issuer: config.issuer, admin: config.admin, keys, knex, devSecret: options.adminDevSecret }),
      requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
      unauthenticated: unauthenticatedRejections,
      closing: adminClosing.signal,
    }),
    adminConsole(config.admin.path, await loadConsoleFiles()),
  ] : [];
  const issuerOrigin = new URL(config.issuer).origin;
  // Use reports (docs/use-reports.md): served when the use-report resource is configured.
  const { useReports } = config;
  const useReportsServed = useReports.resource !== undefined ? [
    useReportEndpoint({
      path: useReports.path,
      authenticate: createReporterAuthenticator({ issuer: config.issuer, keys, knex, resource: useReports.resource }),
      // Who serves an API follows a reload, as every other policy does.
      servingClientsOf: (resource, ctx) => {
        const declared = snapshotOf(ctx).resources.get(resource);
        return declared && [...declared.servedBy, ...declared.introspectors];
      },
      knex, logger,
      maxEventAgeSeconds: useReports.maxEventAge,
      requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
      unauthenticated: unauthenticatedRejections,
      metrics,
    }),
  ] : [];

  /**
   * Everything that runs around oidc-provider's routes, outermost first: each one sees the answer
   * of every one after it. The order is the design, so it is stated here once.
   */
  const aroundTheProvider = [
    // Outermost: the access line and the counters see the status the client was sent.
    ...observers.outermost,
    requestContext(logger, live),
    healthEndpoints(knex, logger, { readinessTimeoutMs: waits.readinessTimeout }),
    ...observers.besideHealth,
    retryAfterOnUnavailable,
    // Records every refused ledger-route request, after the answers of everything below were made.
    recordRejections({
      knex, provider, logger, requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId), unauthenticated: unauthenticatedRejections,
      maxWaitMs: waits.acquireTimeout,
    }),
    // Inside recordRejections, so that the ledger records the description the client is sent.
    describeUnsupportedAssertionAlg(),
    // Only the issuer's and the listeners' own origins are served; URLs are built from the checked one.
    servedOriginOnly({ served: servedOriginsOf(config), isTrustedProxy: (address) => isTrustedProxy(address, trustedHops) }, logger),
    // Inside recordRejections (its refusals are recorded) and around the routes whose answers it
    // replaces: Tether's introspection / revocation answers for JWT and opaque tokens.
    tokenStatusEndpoints({
      knex,
      verifier: ownTokens,
      issuer: config.issuer,
      introspectorsOf: (resource, ctx) => snapshotOf(ctx).resources.get(resource)?.introspectors ?? [],
      logger,
      requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
    }),
    // The caller's certificate, resolved once before oidc-provider's client authentication reads it.
    resolveCallerCertificate({ proxy }, logger),
    // After the caller's certificate is resolved (mTLS-bound admin tokens), before the route filter.
    ...admin,
    ...useReportsServed,
    discoveryAdditions(issuerOrigin, config.listeners.https ? issuerOrigin : undefined, useReports.resource !== undefined ? `${issuerOrigin}${useReports.path}` : undefined),
    // Last, so that it runs just before oidc-provider's router: only Tether's endpoints reach it.
    servedRoutesOnly(provider, config.http),
  ];
  for (const middleware of aroundTheProvider) provider.use(middleware);

  return {
    provider,
    callback: provider.callback(),
    instanceId,
    get publicJwks() {
      return keys.current().publicJwks as JSONWebKeySet;
    },
    keys,
    unauthenticatedRejections,
    endAdminStreams: () => adminClosing.abort(),
    metrics,
    configuration: () => live.current(),
    reconfigure: oneAtATime(async (next: TetherConfig, reconfigureOptions: ReconfigureOptions = {}): Promise<Reconfigured> => {
      const { source = 'configuration', checks } = reconfigureOptions;
      const running = live.current();
      const plan = planReload(running.config, next);
      // The file was valid on its own; with the running restart-only values it must be too (e.g. an
      // mtls client needs the https listener that is running, not one the file adds).
      const issues = [...crossReferenceIssues(plan.config), ...(checks?.(plan.config) ?? [])];
      if (issues.length > 0) throw configErrorOfIssues(source, issues);
      const snapshot = buildConfigSnapshot(provider, GRANT_TYPES, plan.config, running, source);
      // The issuance statement locks the client's state row (ledger/record_issuance.ts): new clients need theirs first.
      const added = plan.config.clients.map((client) => client.id).filter((id) => !running.clients.has(id));
      await ensureClientStates(knex, added);
      live.replace(snapshot);
      return { generation: snapshot.generation, clients: snapshot.clients.size, resources: snapshot.resources.size, needsRestart: plan.needsRestart };
    }),
    close: async () => {
      adminClosing.abort();
      await keys.close();
      await unauthenticatedRejections.stop();
    },
  };
}

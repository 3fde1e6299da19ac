import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino, type Logger } from 'pino';
import type { Agent } from 'undici';
import { parseConfig } from '../config/load_config.js';
import { DEV_CONFIG } from '../config/dev_defaults.js';
import { certificateClientIds, type TetherConfig } from '../config/schema.js';
import { closeListener, listenHttp, listenHttps, type RunningListener } from '../http/listeners.js';
import { createTetherApp, type TetherApp } from '../http/tether_app.js';
import { listenMetrics } from '../observability/metrics_endpoint.js';
import { createEphemeralPki, type Pki } from '../keys/dev_pki.js';
import { openDatabase, prepareInMemoryDatabase, type Database } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrate.js';
import { createAgentPool } from './agents.js';
import { harnessTokens, type HarnessTokens } from './harness_tokens.js';

/** Options of {@link startTether}. */
export interface StartTetherOptions {
  /**
   * Resources and clients (the same shape as `tether.config.yaml`); defaults to the development
   * configuration. `issuer`, `listeners` and `dataDir` are set by the harness.
   */
  config?: Record<string, unknown>;
  /** A database to use (it is migrated, and left open on close); default: a fresh in-memory PGlite. */
  database?: Database;
  /** Logger; default: silent. */
  logger?: Logger;
  /** Loopback port of the HTTPS listener; default 0 (any free port). The issuer is `https://localhost:<port>`. */
  port?: number;
  /**
   * The issuer, when clients reach this Tether through a TLS-terminating proxy or load balancer
   * (list it in `config.trustedProxies`); default: the HTTPS listener's own origin. Several
   * instances behind one proxy share one issuer.
   */
  issuer?: string;
  /**
   * Also listen on plain HTTP on a loopback port (as `listeners.http`), e.g. as a proxy's upstream.
   * `allowClientSecrets` is the development opt-in of that listener.
   */
  http?: boolean | { allowClientSecrets?: boolean };
  /**
   * The PKI to serve TLS with and to take client certificates from (it must hold a certificate for
   * every `tls_client_auth` client); default: a new in-memory one.
   */
  pki?: Pki;
  /** Serve the admin API with this local credential, as `tether dev` does (src/admin/dev_credential.ts). */
  adminDevSecret?: string;
}

/** A Tether running in this process on a loopback port, with a throwaway PKI and database. */
export interface RunningTether extends HarnessTokens {
  /** The issuer URL, e.g. `https://localhost:53121`; the HTTPS listener's origin unless `options.issuer` was given. */
  issuer: string;
  /** The HTTPS listener's own origin, e.g. `https://localhost:53121`. */
  origin: string;
  /** The plain HTTP listener's origin (`http://127.0.0.1:<port>`), when `options.http` asked for one. */
  httpOrigin?: string;
  /** Where Prometheus metrics are served, when `config.metrics.listener` turns them on. */
  metricsUrl?: string;
  tokenEndpoint: string;
  /** RFC 7662 introspection endpoint. */
  introspectionEndpoint: string;
  /** RFC 7009 revocation endpoint. */
  revocationEndpoint: string;
  jwksUri: string;
  /** The public signing keys, as served at {@link RunningTether.jwksUri} (for verifiers given a local JWKS). */
  jwks: { keys: Record<string, unknown>[] };
  config: TetherConfig;
  /** CA, server certificate and one client certificate per `tls_client_auth` client (named by client id). */
  pki: Pki;
  database: Database;
  app: TetherApp;
  /**
   * A new undici dispatcher that trusts the harness CA and, when `clientId` has a certificate in the
   * PKI, presents it. Closed by {@link RunningTether.close}.
   */
  dispatcherFor(clientId?: string): Agent;
  /** Stops the listener, closes dispatchers, and closes the database if the harness opened it. */
  close(): Promise<void>;
}

/**
 * Starts a real Tether in-process: the same token path, policy and ledger as `tether start`, on
 * a loopback port, over an in-memory PGlite started from a migrated snapshot.
 *
 * Each call is independent (its own database, PKI, keys and port), so any number may run in one
 * process and in parallel. The returned object's functions do not use `this`: it may be spread.
 */
export async function startTether(options: StartTetherOptions = {}): Promise<RunningTether> {
  // Reading the snapshot and compiling PGlite overlap with everything below.
  if (!options.database) prepareInMemoryDatabase();
  const raw = { ...(options.config ?? DEV_CONFIG) };
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  const pkiReady = options.pki ? Promise.resolve(options.pki) : createEphemeralPki({ clientNames: certificateClientIds((raw.clients ?? []) as { id: string }[]) });
  const ownsDatabase = !options.database;
  const trampoline = (req: IncomingMessage, res: ServerResponse) => (handler ? handler(req, res) : unavailable(res));
  const [pki, opened, listener, httpListener] = await settleAll([
    pkiReady,
    ownsDatabase ? openDatabase({ memory: true }) : Promise.resolve(options.database!),
    // The issuer names the port, so bind first; requests wait for the application behind a trampoline.
    pkiReady.then((ready) => listenHttps(
      trampoline,
      { host: '127.0.0.1', port: options.port ?? 0 },
      { certPem: ready.server.certificatePem, keyPem: ready.server.privateKeyPem, clientCaPem: ready.ca.certificatePem },
    )),
    options.http ? listenHttp(trampoline, { host: '127.0.0.1', port: 0 }, '127.0.0.1') : Promise.resolve(undefined),
  ], async ([, opened, listener, httpListener]) => {
    await Promise.all([listener, httpListener].map((bound) => bound && closeListener(bound, 0)));
    if (opened && ownsDatabase) await opened.close();
  });
  const database = opened;
  const issuer = options.issuer ?? listener.origin;
  const agents = createAgentPool(pki.ca.certificatePem);
  let metricsListener: RunningListener | undefined;
  const closeListeners = (graceMs: number) => Promise.all([listener, httpListener, metricsListener].map((bound) => bound && closeListener(bound, graceMs)));

  try {
    // One query when the database came from the migrated snapshot (storage/migrate.ts).
    await migrateToLatest(database.knex);
    const config = parseConfig({ ...raw, issuer, listeners: listenersConfigOf(listener, httpListener, options.http), dataDir: '.' });
    const app = await createTetherApp({
      config, database, logger: options.logger ?? pino({ level: 'silent' }), clientCaPem: pki.ca.certificatePem, adminDevSecret: options.adminDevSecret,
    });
    handler = app.callback;
    metricsListener = await listenConfiguredMetrics(app, config);

    const endpoints = {
      issuer,
      tokenEndpoint: `${issuer}/token`,
      revocationEndpoint: `${issuer}/token/revocation`,
    };
    return {
      ...endpoints,
      origin: listener.origin,
      ...(httpListener ? { httpOrigin: httpListener.origin } : {}),
      ...metricsUrlOf(config, { https: listener, http: httpListener, own: metricsListener }),
      introspectionEndpoint: `${issuer}/token/introspection`,
      jwksUri: `${issuer}/jwks`,
      jwks: app.publicJwks as { keys: Record<string, unknown>[] },
      config,
      pki,
      database,
      app,
      ...harnessTokens({ config, pki, knex: database.knex, endpoints, agents }),
      dispatcherFor(clientId) {
        return agents.newAgent(clientId ? pki.clients[clientId] : undefined);
      },
      async close() {
        await agents.close();
        await closeListeners(1000);
        await app.close();
        if (ownsDatabase) await database.close();
      },
    };
  } catch (error) {
    await agents.close();
    await closeListeners(0);
    if (ownsDatabase) await database.close();
    throw error;
  }
}

/** `metrics.listener: {host, port}` gets a listener of its own (port 0: any free one). */
async function listenConfiguredMetrics(app: TetherApp, config: TetherConfig): Promise<RunningListener | undefined> {
  const { listener, path } = config.metrics;
  if (!app.metrics || typeof listener !== 'object') return undefined;
  return listenMetrics(app.metrics.registry, path, listener);
}

function metricsUrlOf(config: TetherConfig, bound: { https: RunningListener; http: RunningListener | undefined; own: RunningListener | undefined }): { metricsUrl?: string } {
  const { listener, path } = config.metrics;
  const origin = listener === 'off' ? undefined : typeof listener === 'object' ? bound.own?.origin : bound[listener]?.origin;
  return origin === undefined ? {} : { metricsUrl: `${origin}${path}` };
}

/** `listeners` of the configuration: the ports actually bound. */
function listenersConfigOf(https: RunningListener, http: RunningListener | undefined, httpOption: StartTetherOptions['http']) {
  const portOf = (bound: RunningListener) => Number(new URL(bound.origin).port);
  return {
    https: { host: '127.0.0.1', port: portOf(https) },
    ...(http ? { http: { host: '127.0.0.1', port: portOf(http), allowClientSecrets: typeof httpOption === 'object' && httpOption.allowClientSecrets === true } } : {}),
  };
}

/**
 * Like `Promise.all`, but when one step fails it waits for the others and hands the ones that
 * succeeded to `undo` (a listener bound while the database failed must not stay open).
 */
async function settleAll<T extends readonly unknown[]>(
  steps: { [K in keyof T]: Promise<T[K]> },
  undo: (done: { [K in keyof T]: T[K] | undefined }) => Promise<void>,
): Promise<T> {
  const settled = await Promise.allSettled(steps);
  const failure = settled.find((result) => result.status === 'rejected');
  const values = settled.map((result) => (result.status === 'fulfilled' ? result.value : undefined));
  if (failure) {
    await undo(values as { [K in keyof T]: T[K] | undefined });
    throw failure.reason;
  }
  return values as unknown as T;
}

function unavailable(res: ServerResponse): void {
  res.writeHead(503, { 'retry-after': '1' }).end();
}

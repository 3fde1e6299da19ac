import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, loadConfigFile, parseConfig } from '../config/load_config.js';
import { DEV_CONFIG, DEV_METRICS } from '../config/dev_defaults.js';
import { clientCaBundleProblem } from '../binding/client_ca_bundle.js';
import { certificateClientIds, databaseTimeoutsMs, startModeIssues, type TetherConfig } from '../config/schema.js';
import { closeListener, listenHttp, listenHttps, type RunningListener } from '../http/listeners.js';
import { createTetherApp, type Reconfigured, type TetherApp } from '../http/tether_app.js';
import { ensureDevPki, type DevPki } from '../keys/dev_pki.js';
import { KeyEncryptionError } from '../keys/key_encryption.js';
import { startExpirySweeper } from '../storage/adapter.js';
import { openDatabase, type Database } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrate.js';
import { curlTokenExample } from './token_example.js';
import { newDevSecret, removeDevCredential, writeDevCredential } from '../admin/dev_credential.js';
import { knexLogTo } from '../observability/library_logs.js';
import { listenMetrics } from '../observability/metrics_endpoint.js';

export interface ServerOptions {
  mode: 'dev' | 'start';
  configFile?: string;
  logger: Logger;
}

/** `tether dev`: the given or local config, else the built-in development config; generates a PKI. */
export async function loadDevConfig(configFile: string | undefined): Promise<TetherConfig> {
  const file = configFile ?? (existsSync('tether.config.yaml') ? 'tether.config.yaml' : undefined);
  if (file) return loadConfigFile(file);
  const config = parseConfig({ ...DEV_CONFIG, metrics: DEV_METRICS }, { source: 'built-in development configuration', env: process.env });
  return { ...config, dataDir: path.resolve(config.dataDir) };
}

/** `tether start`: production mode needs a config file and PostgreSQL, and generates nothing. */
export async function loadProductionConfig(configFile: string | undefined): Promise<TetherConfig> {
  if (!configFile) throw new ConfigError('tether start needs --config <file>');
  const config = await loadConfigFile(configFile);
  if (!config.databaseUrl) throw new ConfigError(`${configFile}: databaseUrl: tether start needs PostgreSQL (set DATABASE_URL)`);
  const https = config.listeners.https;
  if (https && (!https.certFile || !https.keyFile)) {
    throw new ConfigError(`${configFile}: listeners.https: certFile and keyFile are required by tether start`);
  }
  if (config.listeners.http?.allowClientSecrets) {
    throw new ConfigError(`${configFile}: listeners.http.allowClientSecrets: client secrets over plain HTTP are for development; tether start accepts them only over TLS (an https listener, or a TLS-terminating proxy in trustedProxies)`);
  }
  return config;
}

/**
 * Production keeps private signing keys and the DPoP nonce secret encrypted at rest unless the
 * configuration explicitly opts out (and then says so loudly at every start).
 */
function requireKeyEncryption(config: TetherConfig, configFile: string | undefined, logger: Logger): void {
  if (config.signing.encryptionSecret !== undefined) return;
  if (!config.signing.allowPlaintextKeys) {
    throw new ConfigError(
      `${configFile}: signing.encryptionSecret: tether start keeps signing keys encrypted at rest; set TETHER_KEY_ENCRYPTION_SECRET ` +
        '(at least 32 random characters, e.g. openssl rand -base64 32), or set signing.allowPlaintextKeys: true to store them in plaintext',
    );
  }
  logger.warn('signing.allowPlaintextKeys is set: private signing keys and the DPoP nonce secret are stored UNENCRYPTED in the database; anyone who can read it can mint tokens. Set TETHER_KEY_ENCRYPTION_SECRET.');
}

/** A key that cannot be read or written with the configured secret is a configuration problem: one line, exit 2. */
function asConfigError(error: unknown): unknown {
  return error instanceof KeyEncryptionError ? new ConfigError(`signing keys: ${error.message}`) : error;
}

/** Opens the configured database: PostgreSQL when a URL is set, otherwise PGlite under dataDir. */
export async function openConfiguredDatabase(config: TetherConfig, logger?: Logger): Promise<Database> {
  // The server's knex messages are JSON lines of its log; a CLI command's stay plain lines on stderr.
  const log = logger ? knexLogTo(logger) : undefined;
  return config.databaseUrl
    ? openDatabase({ url: config.databaseUrl, timeouts: databaseTimeoutsMs(config.database), log })
    : openDatabase({ directory: path.join(config.dataDir, 'db'), timeouts: databaseTimeoutsMs(config.database), log });
}

interface TlsFiles {
  certPem: string;
  keyPem: string;
  clientCaPem?: string;
}

async function tlsFilesOf(config: TetherConfig, pki: DevPki | undefined): Promise<TlsFiles | undefined> {
  const https = config.listeners.https;
  if (!https) return undefined;
  const [certPem, keyPem, configuredCa] = await Promise.all([readTlsFile(https, 'certFile'), readTlsFile(https, 'keyFile'), readClientCa(https)]);
  // The only trust anchors for client certificates: the listener and the proxy path get exactly these
  // (an absent bundle means no CA at all, never Node's default roots; see http/listeners.ts).
  const clientCaPem = [configuredCa, pki?.ca.certificatePem].filter(Boolean).join('\n') || undefined;
  return {
    certPem: certPem ?? pki!.server.certificatePem,
    keyPem: keyPem ?? pki!.server.privateKeyPem,
    clientCaPem,
  };
}

/**
 * What serving in production needs beyond a valid configuration (the admin commands, which read the
 * same file, serve nothing and need none of it).
 */
function assertServable(config: TetherConfig, configFile: string): void {
  const [issue] = startModeIssues(config);
  if (issue) throw new ConfigError(`${configFile}: ${issue.path.join('.')}: ${issue.message}`);
}

type HttpsListenerConfig = NonNullable<TetherConfig['listeners']['https']>;

/** A PEM file the HTTPS listener names; a file it cannot read is a configuration error naming the field. */
async function readTlsFile(https: HttpsListenerConfig, field: 'certFile' | 'keyFile' | 'clientCaFile'): Promise<string | undefined> {
  const file = https[field];
  if (!file) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    // EACCES is the usual one in a container: a bind mount keeps the host's owner and mode.
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    const hint = code === 'EACCES' ? `; this process runs as uid ${process.getuid?.() ?? '?'}, which must be able to read it` : '';
    throw new ConfigError(`listeners.https.${field}: cannot read ${file} (${code})${hint}`);
  }
}

/** The configured client CA bundle, checked: a file that is no CA bundle is a configuration error. */
async function readClientCa(https: HttpsListenerConfig): Promise<string | undefined> {
  const pem = await readTlsFile(https, 'clientCaFile');
  if (pem === undefined) return undefined;
  const problem = clientCaBundleProblem(pem);
  if (problem) throw new ConfigError(`listeners.https.clientCaFile: ${https.clientCaFile} ${problem}`);
  return pem;
}

/** What one reload did: applied (with what waits for a restart), or refused and why. */
export type ReloadOutcome = ({ applied: true } & Reconfigured) | { applied: false; error: string; problems: readonly string[] };

export interface RunningServer {
  /** Stops gracefully: stop accepting, finish in-flight requests, close the database. */
  stop(): Promise<void>;
  /**
   * Re-reads and validates the configuration file as at start and, when it is valid, replaces
   * clients, resources and policy without dropping a connection or a request in flight; otherwise
   * the running configuration stays. Logged either way (SIGHUP runs it; docs/operations.md).
   */
  reload(): Promise<ReloadOutcome>;
  listeners: RunningListener[];
}

/**
 * Starts Tether and resolves once it listens.
 */
export async function runServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const config = options.mode === 'dev' ? await loadDevConfig(options.configFile) : await loadProductionConfig(options.configFile);
  if (options.mode === 'start') assertServable(config, options.configFile!);
  const pki = options.mode === 'dev' && config.listeners.https
    ? await ensureDevPki({ directory: path.join(config.dataDir, 'pki'), clientNames: certificateClientIds(config.clients) })
    : undefined;
  const tls = await tlsFilesOf(config, pki);

  if (options.mode === 'start') requireKeyEncryption(config, options.configFile, logger);

  // tether dev serves the admin API unless told not to, with a local credential; tether start only when enabled.
  const adminDevSecret = options.mode === 'dev' && config.admin.enabled !== false ? newDevSecret() : undefined;
  const database = await openConfiguredDatabase(config, logger);
  const listeners: RunningListener[] = [];
  let adminCredentialFile: string | undefined;
  let sweeper: { stop(): Promise<void> } | undefined;
  let app: TetherApp | undefined;
  let metricsServer: RunningListener | undefined;
  try {
    const { applied } = await migrateToLatest(database.knex);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    app = await createTetherApp({ config, database, logger, clientCaPem: tls?.clientCaPem, adminDevSecret });
    if (config.listeners.https && tls) listeners.push(await listenHttps(app.callback, config.listeners.https, tls, new URL(config.issuer).hostname, config.http));
    if (config.listeners.http) listeners.push(await listenHttp(app.callback, config.listeners.http, 'localhost', config.http));
    const metricsListener = config.metrics.listener;
    if (app.metrics && typeof metricsListener === 'object') metricsServer = await listenMetrics(app.metrics.registry, config.metrics.path, metricsListener, config.http);
    sweeper = startExpirySweeper(database.knex, {
      intervalMs: 60_000, onError: (error) => logger.warn({ err: error }, 'expiry sweep failed; retrying at the next interval'),
    });
    if (adminDevSecret !== undefined) adminCredentialFile = await writeAdminCredential(config, listeners, pki, adminDevSecret);
  } catch (error) {
    if (adminDevSecret !== undefined) await removeDevCredential(config.dataDir);
    await Promise.all([...listeners, ...(metricsServer ? [metricsServer] : [])].map((listener) => closeListener(listener, 0)));
    await app?.close();
    await database.close();
    throw asConfigError(error);
  }

  warnOfSharedMetrics(config, options.mode, logger);
  const metricsUrl = metricsUrlOf(config, listeners, metricsServer);
  if (options.mode === 'dev') printDevBanner(config, listeners, pki, { metricsUrl, adminCredentialFile });
  else logger.info({ issuer: config.issuer, listeners: listeners.map((listener) => listener.origin), metrics: metricsUrl }, 'tether started');

  const running = app!;
  const stop = async () => {
    app?.endAdminStreams();
    if (adminCredentialFile !== undefined) await removeDevCredential(config.dataDir);
    await Promise.all([...listeners, ...(metricsServer ? [metricsServer] : [])].map((listener) => closeListener(listener)));
    await sweeper?.stop();
    await running.close();
    await database.close();
  };
  const reload = () => reloadConfiguration(options, running, pki);
  return { stop, reload, listeners };
}

/** One reload: the file read and checked exactly as at start, then handed to the running app. */
async function reloadConfiguration(options: ServerOptions, app: TetherApp, pki: DevPki | undefined): Promise<ReloadOutcome> {
  const { logger } = options;
  const generation = app.configuration().generation;
  try {
    const next = options.mode === 'dev' ? await loadDevConfig(options.configFile) : await loadProductionConfig(options.configFile);
    if (options.mode === 'start') assertServable(next, options.configFile!);
    // `tether dev` issues a certificate to each tls_client_auth client, new ones included.
    if (pki) await ensureDevPki({ directory: pki.directory, clientNames: certificateClientIds(next.clients) });
    const source = options.configFile ?? 'configuration';
    const checks = options.mode === 'start' ? startModeIssues : undefined;
    const done = await app.reconfigure(next, { source, checks });
    // One line; a warning when some changes wait for a restart (they keep their running value until then).
    const { needsRestart } = done;
    logger[needsRestart.length > 0 ? 'warn' : 'info']({ generation: done.generation, clients: done.clients, resources: done.resources, needsRestart }, 'configuration reloaded');
    return { applied: true, ...done };
  } catch (error) {
    const refusal = asConfigError(error);
    if (refusal instanceof ConfigError) {
      // The same message `tether start` prints for this file (every problem, each naming its path).
      logger.error({ generation, error: refusal.message, problems: refusal.problems }, `configuration reload refused; still running generation ${generation}`);
      return { applied: false, error: refusal.message, problems: refusal.problems };
    }
    const message = (error as Error)?.message ?? String(error);
    logger.error({ generation, error: message }, `configuration reload failed; still running generation ${generation}`);
    return { applied: false, error: message, problems: [message] };
  }
}

/**
/**
 * The dev credential file: the secret and where the admin API is, for the CLI next to this server
 * (plain HTTP on loopback when there is an http listener, else https with the development CA).
 */
async function writeAdminCredential(config: TetherConfig, listeners: RunningListener[], pki: DevPki | undefined, secret: string): Promise<string> {
  const http = listeners.find((listener) => listener.kind === 'http');
  const origin = http?.origin ?? new URL(config.issuer).origin;
  return writeDevCredential(config.dataDir, {
    secret,
    url: `${origin}${config.admin.path}`,
    ...(http || !pki ? {} : { caFile: pki.ca.certificatePath }),
    pid: process.pid,
  });
}

/**
 * Metrics served next to the token endpoint can be read by anyone who reaches it (client ids,
 * resources, volumes): allowed, documented, and said at every production start.
 */
function warnOfSharedMetrics(config: TetherConfig, mode: ServerOptions['mode'], logger: Logger): void {
  const { listener, path: metricsPath } = config.metrics;
  if (mode !== 'start' || (listener !== 'http' && listener !== 'https')) return;
  logger.warn({ listener, path: metricsPath }, `metrics are served on the ${listener} listener: anyone who reaches it can read ${metricsPath} (client ids, resources, volumes); prefer metrics.listener: {host, port} on an address only the scraper reaches`);
}

/** Where Prometheus scrapes this instance, when metrics are on. */
function metricsUrlOf(config: TetherConfig, listeners: RunningListener[], metricsServer: RunningListener | undefined): string | undefined {
  const { listener, path: metricsPath } = config.metrics;
  const origin = typeof listener === 'object' ? metricsServer?.origin : listeners.find((running) => running.kind === listener)?.origin;
  return origin === undefined ? undefined : `${origin}${metricsPath}`;
}

/** Where the banner points besides the token endpoint: metrics and the admin API's dev credential, when on. */
interface BannerExtras {
  metricsUrl: string | undefined;
  adminCredentialFile: string | undefined;
}

function printDevBanner(config: TetherConfig, listeners: RunningListener[], pki: DevPki | undefined, { metricsUrl, adminCredentialFile }: BannerExtras): void {
  const https = listeners.find((listener) => listener.kind === 'https');
  const http = listeners.find((listener) => listener.kind === 'http');
  const relative = (file: string) => path.relative(process.cwd(), file) || file;
  const lines = [
    `Tether (development) — issuer ${config.issuer}`,
    ...listeners.map((listener) => `  ${listener.kind.padEnd(5)} ${listener.origin}${listener.kind === 'https' ? '  (asks for client certificates)' : ''}`),
    `  discovery  ${config.issuer}/.well-known/oauth-authorization-server`,
    `  token      ${https?.origin ?? http?.origin}/token     jwks ${config.issuer}/jwks`,
    `  health     ${(http ?? https)?.origin}/healthz  ${(http ?? https)?.origin}/readyz`,
    ...(metricsUrl ? [`  metrics    ${metricsUrl}  (Prometheus)`] : []),
    `  database   ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${relative(path.join(config.dataDir, 'db'))}`}`,
    ...(adminCredentialFile ? [`  admin      ${(http ?? https)?.origin}${config.admin.path}/api  credential in ${relative(adminCredentialFile)} (mode 0600; tether tokens|clients|ledger use it)`] : []),
  ];
  const mtlsClient = config.clients.find((client) => client.auth.method === 'tls_client_auth');
  if (pki && https && mtlsClient) {
    const certificate = pki.clients[mtlsClient.id]!;
    lines.push(
      `  PKI        CA ${relative(pki.ca.certificatePath)}; client certificates in ${relative(path.join(pki.directory, 'clients'))}/`,
      '',
      `A certificate-bound token for ${mtlsClient.id}:`,
      ...curlTokenExample(mtlsClient, {
        caFile: relative(pki.ca.certificatePath), certificateFile: relative(certificate.certificatePath), keyFile: relative(certificate.privateKeyPath),
      }, `${https.origin}/token`),
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

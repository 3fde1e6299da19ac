import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, loadConfigFile, parseConfig } from '../config/load_config.js';
import { DEV_CONFIG } from '../config/dev_defaults.js';
import { certificateClientIds, databaseTimeoutsMs, type TetherConfig } from '../config/schema.js';
import { closeListener, listenHttp, listenHttps, type RunningListener } from '../http/listeners.js';
import { createTetherApp } from '../http/tether_app.js';
import { ensureDevPki, type DevPki } from '../keys/dev_pki.js';
import { startExpirySweeper } from '../storage/adapter.js';
import { openDatabase, type Database } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrate.js';

export interface ServerOptions {
  mode: 'dev' | 'start';
  configFile?: string;
  logger: Logger;
}

/** `tether dev`: the given or local config, else the built-in development config; generates a PKI. */
export async function loadDevConfig(configFile: string | undefined): Promise<TetherConfig> {
  const file = configFile ?? (existsSync('tether.config.yaml') ? 'tether.config.yaml' : undefined);
  if (file) return loadConfigFile(file);
  const config = parseConfig(DEV_CONFIG, { source: 'built-in development configuration', env: process.env });
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
  return config;
}

/** Opens the configured database: PostgreSQL when a URL is set, otherwise PGlite under dataDir. */
export async function openConfiguredDatabase(config: TetherConfig): Promise<Database> {
  return config.databaseUrl
    ? openDatabase({ url: config.databaseUrl, timeouts: databaseTimeoutsMs(config.database) })
    : openDatabase({ directory: path.join(config.dataDir, 'db'), timeouts: databaseTimeoutsMs(config.database) });
}

interface TlsFiles {
  certPem: string;
  keyPem: string;
  clientCaPem?: string;
}

async function tlsFilesOf(config: TetherConfig, pki: DevPki | undefined): Promise<TlsFiles | undefined> {
  const https = config.listeners.https;
  if (!https) return undefined;
  const read = (file: string | undefined) => (file ? readFile(file, 'utf8') : Promise.resolve(undefined));
  const [certPem, keyPem, configuredCa] = await Promise.all([read(https.certFile), read(https.keyFile), read(https.clientCaFile)]);
  const clientCaPem = [configuredCa, pki?.ca.certificatePem].filter(Boolean).join('\n') || undefined;
  return {
    certPem: certPem ?? pki!.server.certificatePem,
    keyPem: keyPem ?? pki!.server.privateKeyPem,
    clientCaPem,
  };
}

/**
 * Starts Tether and resolves once it listens; the returned function stops it gracefully (stop
 * accepting, finish in-flight requests, close the database).
 */
export async function runServer(options: ServerOptions): Promise<{ stop: () => Promise<void>; listeners: RunningListener[] }> {
  const { logger } = options;
  const config = options.mode === 'dev' ? await loadDevConfig(options.configFile) : await loadProductionConfig(options.configFile);
  const pki = options.mode === 'dev' && config.listeners.https
    ? await ensureDevPki({ directory: path.join(config.dataDir, 'pki'), clientNames: certificateClientIds(config.clients) })
    : undefined;
  const tls = await tlsFilesOf(config, pki);

  const database = await openConfiguredDatabase(config);
  const listeners: RunningListener[] = [];
  let sweeper: { stop(): Promise<void> } | undefined;
  try {
    const { applied } = await migrateToLatest(database.knex);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    const app = await createTetherApp({ config, database, logger, clientCaPem: tls?.clientCaPem });
    if (config.listeners.https && tls) listeners.push(await listenHttps(app.callback, config.listeners.https, tls, new URL(config.issuer).hostname));
    if (config.listeners.http) listeners.push(await listenHttp(app.callback, config.listeners.http));
    sweeper = startExpirySweeper(database.knex, { intervalMs: 60_000 });
  } catch (error) {
    await Promise.all(listeners.map((listener) => closeListener(listener, 0)));
    await database.close();
    throw error;
  }

  if (options.mode === 'dev') printDevBanner(config, listeners, pki);
  else logger.info({ issuer: config.issuer, listeners: listeners.map((listener) => listener.origin) }, 'tether started');

  const stop = async () => {
    await Promise.all(listeners.map((listener) => closeListener(listener)));
    await sweeper?.stop();
    await database.close();
  };
  return { stop, listeners };
}

function printDevBanner(config: TetherConfig, listeners: RunningListener[], pki: DevPki | undefined): void {
  const https = listeners.find((listener) => listener.kind === 'https');
  const http = listeners.find((listener) => listener.kind === 'http');
  const relative = (file: string) => path.relative(process.cwd(), file) || file;
  const lines = [
    `Tether (development) — issuer ${config.issuer}`,
    ...listeners.map((listener) => `  ${listener.kind.padEnd(5)} ${listener.origin}${listener.kind === 'https' ? '  (asks for client certificates)' : ''}`),
    `  discovery  ${config.issuer}/.well-known/oauth-authorization-server`,
    `  token      ${https?.origin ?? http?.origin}/token     jwks ${config.issuer}/jwks`,
    `  health     ${(http ?? https)?.origin}/healthz  ${(http ?? https)?.origin}/readyz`,
    `  database   ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${relative(path.join(config.dataDir, 'db'))}`}`,
  ];
  const mtlsClient = config.clients.find((client) => client.auth.method === 'tls_client_auth');
  if (pki && https && mtlsClient) {
    const certificate = pki.clients[mtlsClient.id]!;
    const resource = mtlsClient.defaultResource ?? Object.keys(mtlsClient.resources)[0]!;
    lines.push(
      `  PKI        CA ${relative(pki.ca.certificatePath)}; client certificates in ${relative(path.join(pki.directory, 'clients'))}/`,
      '',
      `A certificate-bound token for ${mtlsClient.id}:`,
      `  curl --cacert ${relative(pki.ca.certificatePath)} \\`,
      `    --cert ${relative(certificate.certificatePath)} --key ${relative(certificate.privateKeyPath)} \\`,
      `    -d grant_type=client_credentials -d client_id=${mtlsClient.id} \\`,
      `    -d resource=${resource} -d scope=${mtlsClient.resources[resource]![0]} \\`,
      `    ${https.origin}/token`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

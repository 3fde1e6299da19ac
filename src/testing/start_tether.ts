import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Agent } from 'undici';
import { parseConfig } from '../config/load_config.js';
import { DEV_CONFIG } from '../config/dev_defaults.js';
import type { TetherConfig } from '../config/schema.js';
import { closeListener, type RunningListener } from '../http/listeners.js';
import { createTetherApp, type TetherApp } from '../http/tether_app.js';
import { createEphemeralPki, type Pki } from '../keys/dev_pki.js';
import { openDatabase, type Database } from '../storage/database.js';
import { migrateToLatest } from '../storage/migrate.js';

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
}

/** A Tether running in this process on a loopback port, with a throwaway PKI and database. */
export interface RunningTether {
  /** The issuer URL, e.g. `https://localhost:53121`; also the HTTPS listener's origin. */
  issuer: string;
  tokenEndpoint: string;
  jwksUri: string;
  config: TetherConfig;
  /** CA, server certificate and one client certificate per `tls_client_auth` client (named by client id). */
  pki: Pki;
  database: Database;
  app: TetherApp;
  /**
   * An undici dispatcher that trusts the harness CA and, when `clientId` has a certificate in the
   * PKI, presents it. Closed by {@link RunningTether.close}.
   */
  dispatcherFor(clientId?: string): Agent;
  /** Stops the listener, closes dispatchers, and closes the database if the harness opened it. */
  close(): Promise<void>;
}

/**
 * Starts a real Tether in-process: the same token path, policy and ledger as `tether start`, on
 * an ephemeral port, over an in-memory PGlite started from a migrated snapshot.
 */
export async function startTether(options: StartTetherOptions = {}): Promise<RunningTether> {
  const raw = { ...(options.config ?? DEV_CONFIG) };
  const mtlsClients = (raw.clients as { id: string; auth: { method: string } }[])
    .filter((client) => client.auth.method === 'tls_client_auth').map((client) => client.id);

  const [pki, database] = await Promise.all([
    createEphemeralPki({ clientNames: mtlsClients }),
    options.database ? Promise.resolve(options.database) : openDatabase({ memory: true }),
  ]);
  const ownsDatabase = !options.database;

  // The issuer names the port, so bind first and attach the application once it exists.
  const server = https.createServer({
    cert: pki.server.certificatePem,
    key: pki.server.privateKeyPem,
    ca: pki.ca.certificatePem,
    requestCert: true,
    rejectUnauthorized: false,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `https://localhost:${port}`;
  const listener: RunningListener = { kind: 'https', server, origin: issuer };
  const dispatchers: Agent[] = [];

  try {
    await migrateToLatest(database.knex);
    const config = parseConfig({ ...raw, issuer, listeners: { https: { host: '127.0.0.1', port } }, dataDir: '.' });
    const app = await createTetherApp({
      config, database, logger: options.logger ?? pino({ level: 'silent' }), clientCaPem: pki.ca.certificatePem,
    });
    server.on('request', app.callback);

    return {
      issuer,
      tokenEndpoint: `${issuer}/token`,
      jwksUri: `${issuer}/jwks`,
      config,
      pki,
      database,
      app,
      dispatcherFor(clientId) {
        const certificate = clientId ? pki.clients[clientId] : undefined;
        const agent = new Agent({
          connect: {
            ca: pki.ca.certificatePem,
            ...(certificate ? { cert: certificate.certificatePem, key: certificate.privateKeyPem } : {}),
          },
        });
        dispatchers.push(agent);
        return agent;
      },
      async close() {
        await Promise.all(dispatchers.map((agent) => agent.close()));
        await closeListener(listener, 1000);
        if (ownsDatabase) await database.close();
      },
    };
  } catch (error) {
    await closeListener(listener, 0);
    if (ownsDatabase) await database.close();
    throw error;
  }
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeProtectedHeader } from 'jose';
import type { Knex } from 'knex';
import { pino } from 'pino';
import { fetch, type Agent } from 'undici';
import { parseConfig } from '../../src/config/load_config.js';
import type { TetherConfig } from '../../src/config/schema.js';
import { closeListener, listenHttps } from '../../src/http/listeners.js';
import { createTetherApp, type TetherApp } from '../../src/http/tether_app.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { createAgentPool } from '../../src/testing/agents.js';
import { openTestDatabase } from '../support/database.js';
import { basicAuth, postForm, type TokenResponse } from '../support/tether.js';

/**
 * Several Tether instances on one database, as in production: each its own createTetherApp and its
 * own connection pool (PostgreSQL), all with the same configuration and issuer. One HTTPS listener
 * stands in for the load balancer; the header `x-fleet-instance` says which instance a request goes
 * to. On PGlite (one owner process) a fleet has one instance.
 */

export const ORDERS = 'https://orders.keys.test';
export const INVENTORY = 'https://inventory.keys.test';
export const ORDERS_API_SECRET = 'orders-api-secret-0123456789abcdef';
export const ENCRYPTION_SECRET = 'fleet-key-encryption-secret-0123456789abcdef';

export function fleetConfig(signing: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    signing: {
      encryptionSecret: ENCRYPTION_SECRET,
      // Short, for the tests: verifiers are assumed to cache the JWKS for 1 s.
      verifierJwksMaxAge: 1,
      publicationDelay: 3,
      // Long: what the tests see must come from NOTIFY, the transition timer or the unknown-kid lookup.
      reloadInterval: 3600,
      unknownKidCooldown: 60,
      ...signing,
    },
    resources: [
      { uri: ORDERS, scopes: ['read'], lifetime: 300, introspectors: ['orders-api'] },
      { uri: INVENTORY, scopes: ['read'], lifetime: 120, introspectors: ['orders-api'] },
    ],
    clients: [
      {
        id: 'caller', owner: 'team-keys', purpose: 'key rotation tests', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=caller' },
        resources: { [ORDERS]: ['read'] }, exchange: { targets: { [INVENTORY]: ['read'] } },
      },
      {
        id: 'orders-api', owner: 'team-keys', purpose: 'introspects orders tokens', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: ORDERS_API_SECRET },
      },
    ],
  };
}

export interface FleetInstance {
  name: string;
  app: TetherApp;
  knex: Knex;
  /** SQL statements this instance sent, in order (knex's `query` event). */
  queries: string[];
}

export interface Fleet {
  issuer: string;
  config: TetherConfig;
  pki: Pki;
  instances: FleetInstance[];
  /** What `tether keys …` would use: another pool on PostgreSQL; on PGlite the same database, in-process. */
  cli: Knex;
  database: Database & { url?: string };
  close(): Promise<void>;
}

const INSTANCE_HEADER = 'x-fleet-instance';

export async function startFleet(options: { size: number; config?: Record<string, unknown>; database?: Database & { url?: string } }): Promise<Fleet> {
  const database = options.database ?? await openTestDatabase();
  const size = database.url === undefined ? 1 : options.size;
  const pki = await createEphemeralPki({ clientNames: ['caller'] });
  const instances: FleetInstance[] = [];
  const route = (req: IncomingMessage, res: ServerResponse) => {
    const instance = instances[Number(req.headers[INSTANCE_HEADER] ?? 0)];
    if (instance) instance.app.callback(req, res);
    else res.writeHead(503).end();
  };
  const listener = await listenHttps(route, { host: '127.0.0.1', port: 0 }, {
    certPem: pki.server.certificatePem, keyPem: pki.server.privateKeyPem, clientCaPem: pki.ca.certificatePem,
  });
  const issuer = listener.origin;
  const config = parseConfig({
    ...(options.config ?? fleetConfig()),
    issuer,
    listeners: { https: { host: '127.0.0.1', port: Number(new URL(issuer).port) } },
    dataDir: '.',
  });
  const pools: Database[] = [];
  try {
    for (let index = 0; index < size; index += 1) {
      const own = database.url === undefined ? database : await openDatabase({ url: database.url });
      if (own !== database) pools.push(own);
      const queries: string[] = [];
      own.knex.on('query', (query: { sql: string }) => queries.push(query.sql));
      const app = await createTetherApp({ config, database: own, logger: pino({ level: 'silent' }), clientCaPem: pki.ca.certificatePem, instanceId: `instance-${index}` });
      instances.push({ name: `instance-${index}`, app, knex: own.knex, queries });
    }
  } catch (error) {
    await Promise.all(instances.map((instance) => instance.app.close()));
    await Promise.all(pools.map((pool) => pool.close()));
    await closeListener(listener, 0);
    if (!options.database) await database.close();
    throw error;
  }
  return {
    issuer, config, pki, instances, cli: database.knex, database,
    async close() {
      await closeListener(listener, 1000);
      await Promise.all(instances.map((instance) => instance.app.close()));
      await Promise.all(pools.map((pool) => pool.close()));
      if (!options.database) await database.close();
    },
  };
}

/** Requests to one instance of a fleet, as its clients send them (real TLS, real client certificates). */
export function clientOf(fleet: Fleet) {
  const agents = createAgentPool(fleet.pki.ca.certificatePem);
  const callerAgent = (): Agent => agents.agentFor(fleet.pki.clients.caller);
  const via = (instance: number) => ({ [INSTANCE_HEADER]: String(instance) });
  return {
    async jwksKids(instance: number): Promise<string[]> {
      const response = await fetch(`${fleet.issuer}/jwks`, { headers: via(instance), dispatcher: agents.agentFor() });
      expect(response.status).toBe(200);
      const body = await response.json() as { keys: { kid: string; d?: string }[] };
      for (const key of body.keys) expect(key.d).toBeUndefined();
      return body.keys.map((key) => key.kid);
    },
    /** The token endpoint's answer to a client_credentials request for ORDERS, from `instance`. */
    tokenResponse(instance: number): Promise<TokenResponse> {
      return postForm(`${fleet.issuer}/token`, { grant_type: 'client_credentials', client_id: 'caller', resource: ORDERS, scope: 'read' }, { dispatcher: callerAgent(), headers: via(instance) });
    },
    /** A client_credentials token for ORDERS, from `instance`. */
    async token(instance: number): Promise<{ token: string; kid: string }> {
      const { status, body } = await this.tokenResponse(instance);
      expect({ status, error: body.error }).toEqual({ status: 200, error: undefined });
      const token = body.access_token as string;
      return { token, kid: decodeProtectedHeader(token).kid as string };
    },
    introspect(instance: number, token: string): Promise<TokenResponse> {
      return postForm(`${fleet.issuer}/token/introspection`, { token }, { dispatcher: agents.agentFor(), headers: { ...via(instance), authorization: basicAuth('orders-api', ORDERS_API_SECRET) } });
    },
    revoke(instance: number, token: string): Promise<TokenResponse> {
      return postForm(`${fleet.issuer}/token/revocation`, { token, client_id: 'caller' }, { dispatcher: callerAgent(), headers: via(instance) });
    },
    exchange(instance: number, subjectToken: string): Promise<TokenResponse> {
      return postForm(`${fleet.issuer}/token`, {
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: 'caller',
        subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        resource: INVENTORY, scope: 'read',
      }, { dispatcher: callerAgent(), headers: via(instance) });
    },
    close: () => agents.close(),
  };
}

/**
 * Polls `check` until it returns a value other than undefined: bounded by a generous deadline and a
 * count, never a claim about how long it took.
 */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, { deadlineMs = 90_000, intervalMs = 100 } = {}): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; attempt < deadlineMs / intervalMs + 10; attempt += 1) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** SQL statements that read or write signing keys. */
export function keyQueries(instance: FleetInstance): string[] {
  return instance.queries.filter((sql) => /signing_keys/.test(sql));
}

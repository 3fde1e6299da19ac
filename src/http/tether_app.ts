import { randomUUID } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import { databaseTimeoutsMs, type TetherConfig } from '../config/schema.js';
import { clientCredentialsHandler, clientCredentialsParameters } from '../grants/client_credentials.js';
import type { GrantContext } from '../grants/grant_context.js';
import { tokenExchangeHandler } from '../grants/token_exchange/handler.js';
import { tokenExchangeDuplicableParameters, tokenExchangeParameters } from '../grants/token_exchange/parse_request.js';
import { ensureClientStates } from '../ledger/client_states.js';
import { createIssuanceLedger } from '../ledger/issuance_recorder.js';
import { listenForRejections, recordRejections } from '../ledger/rejections.js';
import { tokenStatusEndpoints } from '../ledger/token_status_endpoints.js';
import { ownTokenVerifier } from '../keys/own_tokens.js';
import { loadServerSecret, loadSigningKeys } from '../keys/signing_keys.js';
import { ALLOWED_JWS_ALGORITHMS, TOKEN_EXCHANGE_GRANT } from '../provider/client_metadata.js';
import { createProvider } from '../provider/create_provider.js';
import { resourceRegistry } from '../provider/resource_policy.js';
import { createAdapterFactory } from '../storage/adapter.js';
import type { Database } from '../storage/database.js';
import {
  certificateOf, discoveryAdditions, healthEndpoints, requestContext, requestFactsOf, resolveCallerCertificate, retryAfterOnUnavailable,
} from './middleware.js';

export interface TetherAppOptions {
  config: TetherConfig;
  database: Database;
  logger: Logger;
  /** PEM bundle of CAs that tls_client_auth certificates must chain to (also given to the TLS listener). */
  clientCaPem?: string;
  instanceId?: string;
}

/** Tether's request handling: oidc-provider with Tether's grants and middleware, over one database. */
export interface TetherApp {
  provider: Provider;
  /** A node:http request listener, for any number of listeners. */
  callback: ReturnType<Provider['callback']>;
  instanceId: string;
  grant: GrantContext;
  /** The verification keys published at jwks_uri, as loaded at start. */
  publicJwks: JSONWebKeySet;
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

  const [{ jwks, publicJwks }, dpopNonceSecret] = await Promise.all([
    loadSigningKeys(knex, { algorithm: config.signing.algorithm, encryptionSecret: config.signing.encryptionSecret }),
    loadServerSecret(knex, 'dpop_nonce'),
    // Issuance locks the client's state row, so every configured client needs one (ledger/client_states.ts).
    ensureClientStates(knex, config.clients.map((client) => client.id)),
  ]);

  const provider = createProvider({
    config,
    adapter: createAdapterFactory(knex),
    jwks: jwks as never,
    dpopNonceSecret,
    callerCertificate: certificateOf,
  });
  provider.proxy = config.trustedProxies.length > 0;

  const grant: GrantContext = {
    provider,
    config,
    knex,
    resources: resourceRegistry(config),
    clients: new Map(config.clients.map((client) => [client.id, client])),
    ledger: createIssuanceLedger(knex, {
      batching: { queueLimit: config.database.queueLimit, queueTimeoutMs: waits.acquireTimeout },
    }),
    instanceId,
    certificateOf,
    requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
  };

  // RFC 8707 §2: `resource` may repeat at the HTTP level so that policy, not the parser, refuses it.
  provider.registerGrantType('client_credentials', clientCredentialsHandler(grant), clientCredentialsParameters, ['resource']);
  // Tokens handed back to Tether (exchange, introspection, revocation) are checked against its own keys.
  const ownTokens = ownTokenVerifier({ issuer: config.issuer, publicJwks: publicJwks as JSONWebKeySet, algorithms: [...ALLOWED_JWS_ALGORITHMS] });
  // RFC 8693: token exchange.
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, tokenExchangeHandler(grant, ownTokens), tokenExchangeParameters, tokenExchangeDuplicableParameters);

  provider.use(requestContext(logger));
  provider.use(healthEndpoints(knex, { readinessTimeoutMs: waits.readinessTimeout }));
  provider.use(retryAfterOnUnavailable);
  // Ledger: rejections of the token, introspection and revocation endpoints (recorded after the
  // route answered), and Tether's introspection / revocation answers for JWT and opaque tokens.
  listenForRejections(provider);
  provider.use(recordRejections({
    knex, provider, logger, requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId), maxWaitMs: waits.acquireTimeout,
  }));
  provider.use(tokenStatusEndpoints({
    knex,
    verifier: ownTokens,
    issuer: config.issuer,
    introspectorsOf: (resource) => grant.resources.get(resource)?.introspectors ?? [],
    logger,
    requestFactsOf: (ctx) => requestFactsOf(ctx, instanceId),
  }));
  const proxy = config.trustedProxies.length > 0
    ? { trustedProxies: config.trustedProxies, header: config.clientCertHeader, ca: options.clientCaPem }
    : undefined;
  provider.use(resolveCallerCertificate({ proxy }, logger));
  provider.use(discoveryAdditions(config.listeners.https ? new URL(config.issuer).origin : undefined));

  return { provider, callback: provider.callback(), instanceId, grant, publicJwks: publicJwks as JSONWebKeySet };
}

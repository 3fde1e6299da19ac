import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  startForwardAuthServer,
  type FetchLike,
  type ForwardAuthDecision,
  type ForwardAuthServerOptions,
  type RevocationOptions,
  type RunningForwardAuthServer,
  type VerifierOptions,
} from 'tether-oauth-resource-server';
import { loadAuthzConfig, type AuthzConfig } from '../config/authz_config.js';
import type { AuthzCommandOptions } from './authz_command.js';
import { createAuthzUseReporter } from './authz_use_reporter.js';
import { OperationalError } from './cli_errors.js';
import { writeJsonTo, type CliIo } from './command_conventions.js';
import { createLogger } from './logger.js';
import { stopOnSignals } from './graceful_stop.js';

/** What a running forward-auth server may be given besides its configuration. */
export interface AuthzExtras {
  readonly logger?: Logger;
}

/** A running `tether authz`. */
export interface RunningAuthz {
  readonly url: string;
  close(): Promise<void>;
}

/** `tether authz` (authz_command.ts registers it): checks the configuration, or serves it until SIGTERM / SIGINT. */
export async function runAuthz(options: AuthzCommandOptions, io: CliIo): Promise<void> {
  const config = await loadAuthzConfig(options.config);
  if (options.check) {
    if (options.json) writeJsonTo(io.out, { valid: true, audience: config.audience, routes: config.routes.length });
    else io.out.write(`${options.config}: valid (${config.routes.length} route${config.routes.length === 1 ? '' : 's'} for ${config.audience})\n`);
    return;
  }
  const logger = createLogger();
  const running = await startAuthz(config, { logger }).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new OperationalError(`${options.config}: listen ${config.listen.host}:${config.listen.port} is in use by another process`, { cause: error });
    }
    throw error;
  });
  if (options.json) writeJsonTo(io.out, { listening: running.url, audience: config.audience, gateway: config.gateway });
  else io.out.write(`forward-auth for ${config.audience} (gateway: ${config.gateway}) listening on ${running.url}\n`);
  logger.info({ url: running.url, audience: config.audience, gateway: config.gateway }, 'forward-auth listening');
  stopOnSignals(logger, 'checks', () => running.close());
}

/** Starts the server a configuration describes. */
export async function startAuthz(config: AuthzConfig, extras: AuthzExtras = {}): Promise<RunningAuthz> {
  const ca = config.issuerCaFile === undefined ? undefined : await readFile(config.issuerCaFile, 'utf8');
  const agents: Agent[] = [];
  const agent = (options: ConstructorParameters<typeof Agent>[0]) => {
    const made = new Agent(options);
    agents.push(made);
    return made;
  };
  const issuerAgent = agent({ connect: { ca } });
  // A dispatcher given per call (introspection presenting the API's certificate) wins over this one.
  const fetch = ((input: string, init?: object) => undiciFetch(input, { dispatcher: issuerAgent, ...init })) as unknown as FetchLike;
  const reports = await createAuthzUseReporter(config, ca, (error) => extras.logger?.warn({ err: error }, 'use report failed'));
  const verifier: VerifierOptions = {
    issuer: config.issuer,
    audience: config.audience,
    jwksUri: config.jwksUri,
    allowBearer: config.allowBearer,
    fetch,
    revocation: await revocationOf(config, ca, agent),
    ...(reports === undefined ? {} : { useReporter: reports.reporter }),
  };
  const options: ForwardAuthServerOptions = {
    ...verifier,
    style: config.gateway,
    envoyPathPrefix: config.envoyPathPrefix,
    publicBaseUrl: config.publicBaseUrl,
    routes: config.routes,
    trustedGateways: config.trustedGateways,
    clientCertificateHeader: config.clientCertHeader,
    host: config.listen.host,
    port: config.listen.port,
    onDecision: extras.logger === undefined ? undefined : logDecision(extras.logger),
  };
  let server: RunningForwardAuthServer;
  try {
    server = await startForwardAuthServer(options);
  } catch (error) {
    await reports?.close();
    await Promise.all(agents.map((made) => made.close()));
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    // Once: a second call waits for the first.
    close: () => (closing ??= (async () => {
      await server.close();
      // After the last check: what it judged is in the queue for the reporter's last attempt.
      await reports?.close();
      await Promise.all(agents.map((made) => made.close()));
    })()),
  };
}

async function revocationOf(config: AuthzConfig, ca: string | undefined, agent: (options: ConstructorParameters<typeof Agent>[0]) => Agent): Promise<RevocationOptions | undefined> {
  const introspect = config.revocation?.introspect;
  if (introspect === undefined) return undefined;
  const common = { cacheTtlMs: introspect.cacheTtlMs };
  if (introspect.clientSecret !== undefined) {
    return { introspect: { ...common, clientAuth: { method: 'client_secret_basic', clientId: introspect.clientId, clientSecret: introspect.clientSecret } } };
  }
  const [cert, key] = await Promise.all([readFile(introspect.certFile!, 'utf8'), readFile(introspect.keyFile!, 'utf8')]);
  // RFC 8705 §2: the API's own certificate on the introspection connection.
  return { introspect: { ...common, clientAuth: { method: 'tls_client_auth', clientId: introspect.clientId }, fetchOptions: { dispatcher: agent({ connect: { ca, cert, key } }) } } };
}

/** Refusals at info (an operator looks for them), acceptances at debug. */
function logDecision(logger: Logger): (decision: ForwardAuthDecision) => void {
  return (decision) => {
    const fields = {
      allowed: decision.allowed, status: decision.status, code: decision.code, peer: decision.peer,
      method: decision.method, path: decision.path, client_id: decision.clientId, token_id: decision.tokenId,
    };
    if (decision.allowed) logger.debug(fields, 'forward-auth allowed');
    else logger.info(fields, 'forward-auth refused');
  };
}


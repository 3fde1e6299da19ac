import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import type { DevCredential } from '../admin/dev_credential.js';
import { getFromRunningServer, runningDevServer } from './admin_remote.js';
import { commandLineActor } from './command_context.js';
import { certificateClientIds, type TetherConfig } from '../config/schema.js';
import { ensureDevPki } from '../keys/dev_pki.js';
import { listSigningKeys } from '../keys/signing_keys.js';
import { createAgentPool } from '../testing/agents.js';
import { createDpopKey } from '../testing/dpop.js';
import { otherJwtResource } from '../testing/harness_tokens.js';
import { runProbe, type ProbeReport, type ProbeTarget } from '../testing/probe.js';
import { formatProbeJson, formatProbeTable, formatThroughJson, formatThroughTable } from '../testing/probe_report.js';
import { runProbeThrough, type ThroughReport } from '../testing/probe_through.js';
import { connectToTether, remoteBadTokens } from '../testing/remote_tether.js';
import { importTetherSigningKey, loadTetherSigningKey, type TetherSigningKey } from '../testing/signing_key.js';
import { startTether } from '../testing/start_tether.js';
import type { ClientCredentials } from '../testing/token_client.js';
import type { ProbeCommandOptions } from './probe_command.js';
import { loadDevConfig, openConfiguredDatabase } from './run_server.js';
import { explainDatabaseError, isAddressInUse, portInUseError } from './server_errors.js';

/**
 * What `tether probe` does (probe_command.ts registers it): gets tokens that are wrong in exactly
 * one way from an in-process or a running Tether, sends them to the API, and reports.
 */

/** The probe's report: with `--issuer` from that running Tether, otherwise from one run in this process. */
export function probeReportOf(apiUrl: string, options: ProbeCommandOptions): Promise<ProbeReport | ThroughReport> {
  return options.issuer ? probeWithRunningTether(apiUrl, options) : probeWithInProcessTether(apiUrl, options);
}

export function formatReport(report: ProbeReport | ThroughReport, json: boolean): string {
  if ('upstreamUrl' in report) return json ? formatThroughJson(report) : formatThroughTable(report);
  return json ? formatProbeJson(report) : formatProbeTable(report);
}

/** With --upstream: the upstream URL and its CA (the proofs sent there name the gateway URL). */
async function upstreamOf(options: ProbeCommandOptions): Promise<{ upstreamUrl: string; upstreamCa?: string } | undefined> {
  if (options.upstream === undefined) {
    if (options.upstreamCa !== undefined) throw new Error('--upstream-ca goes with --upstream');
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(options.upstream);
  } catch {
    throw new Error(`--upstream ${JSON.stringify(options.upstream)}: expected an absolute URL`);
  }
  return { upstreamUrl: url.toString(), upstreamCa: options.upstreamCa ? await readFile(options.upstreamCa, 'utf8') : undefined };
}

/** The request and selection, common to both modes. */
async function probeTarget(apiUrl: string, options: ProbeCommandOptions): Promise<ProbeTarget & { only?: string[]; skip?: string[] }> {
  const timeoutMs = Number(options.timeout);
  if (!(timeoutMs > 0)) throw new Error(`--timeout must be a positive number of milliseconds (got ${options.timeout})`);
  return {
    url: new URL(apiUrl).toString(),
    method: options.method,
    headers: Object.fromEntries((options.header ?? []).map(parseHeader)),
    body: options.data,
    ca: options.apiCa ? await readFile(options.apiCa, 'utf8') : undefined,
    timeoutMs,
    only: listOf(options.only),
    skip: listOf(options.skip),
  };
}

/**
 * Runs the configured Tether in this process for the duration of the probe: same issuer, port,
 * database and development PKI as `tether dev` with that configuration, so the API sees the issuer
 * and keys it trusts. (`tether dev` must not be running on the same data at the same time.)
 */
async function probeWithInProcessTether(apiUrl: string, options: ProbeCommandOptions): Promise<ProbeReport | ThroughReport> {
  const target = await probeTarget(apiUrl, options);
  const upstream = await upstreamOf(options);
  const config = await loadDevConfig(options.config);
  const https = config.listeners.https;
  if (!https) throw new Error('the configuration has no listeners.https: run it yourself and pass --issuer');
  const pki = await ensureDevPki({ directory: path.join(config.dataDir, 'pki'), clientNames: certificateClientIds(config.clients) });
  const database = await openConfiguredDatabase(config).catch((error: unknown) => { throw explainDatabaseError(error, config, options.config); });
  try {
    const tether = await startTether({ config: config as unknown as Record<string, unknown>, database, pki, port: https.port }).catch((error: unknown) => {
      // Usually `tether dev` with the same configuration, still running: name it and say what to do.
      throw isAddressInUse(error) ? portInUseError('https', https, options.config, error) : error;
    });
    try {
      if (trimSlash(tether.issuer) !== trimSlash(config.issuer)) {
        throw new Error(`the in-process Tether serves ${tether.issuer}, but the configuration's issuer is ${config.issuer}: run that Tether and pass --issuer`);
      }
      const request = { ...target, client: options.client, resource: options.resource, scope: options.scope, otherResource: options.otherResource };
      return upstream ? await tether.probeThrough({ ...request, ...upstream }) : await tether.probe(request);
    } finally {
      await tether.close();
    }
  } finally {
    await database.close();
  }
}

/** Tokens from a running Tether, with credentials from the command line. */
async function probeWithRunningTether(apiUrl: string, options: ProbeCommandOptions): Promise<ProbeReport | ThroughReport> {
  const target = await probeTarget(apiUrl, options);
  const upstream = await upstreamOf(options);
  const tetherCa = options.ca ? await readFile(options.ca, 'utf8') : undefined;
  const agents = createAgentPool(tetherCa);
  try {
    const credentials = await credentialsFromOptions(options);
    const client = await connectToTether({ issuer: options.issuer!, ca: tetherCa, credentials, agents });
    // Read once, if at all: it names the database holding the signing key, and another resource.
    let config: Promise<TetherConfig> | undefined;
    const configOnce = () => (config ??= loadDevConfig(options.config));
    const signing = await signingKeyFromRunningDev(options.issuer!, configOnce) ?? await signingKeyFromDatabase(options.config, configOnce);
    const cases = await remoteBadTokens(client, {
      resource: options.resource, scope: options.scope,
      // With --config, another JWT resource of that configuration.
      otherResource: options.otherResource ?? (options.config ? otherJwtResource(await configOnce(), options.resource) : undefined),
      ...('reason' in signing ? { signingKeyUnavailable: signing.reason } : { signingKey: signing }),
    });
    return upstream ? await runProbeThrough({ ...target, ...upstream, cases, agents }) : await runProbe({ ...target, cases, agents });
  } finally {
    await agents.close();
  }
}

async function credentialsFromOptions(options: ProbeCommandOptions): Promise<ClientCredentials> {
  if (Boolean(options.cert) !== Boolean(options.key)) throw new Error('--cert and --key go together');
  const secret = options.clientSecret ?? process.env.TETHER_CLIENT_SECRET;
  if (!options.cert && !secret) throw new Error('--issuer needs the client\'s credentials: --cert/--key or --client-secret');
  const [certificatePem, privateKeyPem] = options.cert ? await Promise.all([readFile(options.cert, 'utf8'), readFile(options.key!, 'utf8')]) : [];
  return {
    clientId: options.client,
    ...(certificatePem && privateKeyPem ? { certificate: { certificatePem, privateKeyPem } } : {}),
    ...(secret ? { secret: { value: secret, method: options.secretMethod === 'post' ? 'client_secret_post' as const : 'client_secret_basic' as const } } : {}),
    ...(options.dpop ? { dpopKey: await createDpopKey() } : {}),
  };
}

/**
 * The signing key of the running `tether dev` that holds this configuration's embedded database, from
 * its admin API with the local credential (docs/admin.md): undefined when no such server runs.
 */
async function signingKeyFromRunningDev(issuer: string, loadConfig: () => Promise<TetherConfig>): Promise<TetherSigningKey | { reason: string } | undefined> {
  let server: DevCredential | undefined;
  let config: TetherConfig;
  try {
    config = await loadConfig();
    server = await runningDevServer(config);
  } catch {
    return undefined; // No usable configuration: the database route says why.
  }
  if (!server) return undefined;
  // Its key signs for its issuer only: a key of another Tether would make every check fail for the wrong reason.
  if (trimSlash(config.issuer) !== trimSlash(issuer)) {
    return { reason: `the running tether dev (process ${server.pid}) is the issuer ${config.issuer}, not ${issuer}` };
  }
  try {
    const answer = await getFromRunningServer(server, '/keys/signing', commandLineActor()) as { kid: string; alg: string; private_jwk: JWK; public_jwk: JWK };
    return await importTetherSigningKey({ kid: answer.kid, alg: answer.alg, privateJwk: answer.private_jwk, publicJwk: answer.public_jwk });
  } catch (error) {
    return { reason: `the signing key of the running tether dev could not be read: ${(error as Error).message}` };
  }
}

/**
 * Tether's current signing key from its database, when one is named (`--config` or DATABASE_URL).
 * It never creates a key (a database without a current one yields none). Unavailable (not named, locked by
 * the running Tether, unreachable) means the checks needing the key are reported as skipped.
 */
async function signingKeyFromDatabase(
  configFile: string | undefined, loadConfig: () => Promise<TetherConfig>,
): Promise<TetherSigningKey | { reason: string }> {
  if (!configFile && !process.env.DATABASE_URL) return { reason: 'no access to Tether\'s database for its signing key (--config or DATABASE_URL)' };
  try {
    const config = await loadConfig();
    const options = { algorithm: config.signing.algorithm, encryptionSecret: config.signing.encryptionSecret };
    const database = await openConfiguredDatabase(config);
    try {
      const keys = await listSigningKeys(database.knex);
      if (!keys.some((key) => key.current && key.alg === options.algorithm)) return { reason: 'Tether\'s database holds no current signing key' };
      return await loadTetherSigningKey(database.knex, options);
    } finally {
      await database.close();
    }
  } catch (error) {
    // e.g. the embedded database is held by the running Tether.
    return { reason: `Tether's signing key could not be read: ${(error as Error).message}` };
  }
}

function parseHeader(header: string): [string, string] {
  const colon = header.indexOf(':');
  if (colon < 1) throw new Error(`--header ${JSON.stringify(header)}: expected "name: value"`);
  const name = header.slice(0, colon).trim().toLowerCase();
  if (name === 'authorization' || name === 'dpop') throw new Error(`--header ${name}: the probe sets it`);
  return [name, header.slice(colon + 1).trim()];
}

function listOf(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((item) => item.trim()).filter(Boolean);
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

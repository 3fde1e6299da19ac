import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { JWK } from 'jose';
import type { DevCredential } from '../admin/dev_credential.js';
import { getFromRunningServer, runningDevServer } from './admin_remote.js';
import { commandLineActor } from './inventory_commands.js';
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
import { loadDevConfig, openConfiguredDatabase } from './run_server.js';
import { explainDatabaseError, isAddressInUse, portInUseError } from './server_errors.js';

/** `tether probe` options as commander parses them. */
export interface ProbeCommandOptions {
  client: string;
  resource: string;
  scope?: string;
  method?: string;
  header?: string[];
  data?: string;
  apiCa?: string;
  otherResource?: string;
  only?: string;
  skip?: string;
  json?: boolean;
  config?: string;
  issuer?: string;
  ca?: string;
  cert?: string;
  key?: string;
  clientSecret?: string;
  secretMethod?: 'basic' | 'post';
  dpop?: boolean;
  timeout?: string;
  upstream?: string;
  upstreamCa?: string;
}

/** Exit codes: every check passed / a check failed / the probe, or one of its checks, could not run. */
export const PROBE_EXIT = { passed: 0, failed: 1, unusable: 2 } as const;

/**
 * `tether probe <api-url>`: sends tokens that are wrong in exactly one way to one API operation and
 * reports which checks the API enforces. Tokens come from a Tether started in-process from the
 * configuration (its issuer, port, data directory: the keys and CA the API already trusts), or from
 * a running Tether (`--issuer`). Nothing but the API URL and that Tether is contacted.
 */
export function registerProbeCommand(program: Command, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): void {
  program.command('probe <api-url>')
    .description('check which token checks an API enforces: audience, expiry, signature, binding, scope, revocation')
    .requiredOption('--client <id>', 'the client whose tokens are sent')
    .requiredOption('--resource <uri>', 'the API\'s resource URI (the aud of its tokens)')
    .option('--scope <scopes>', 'scopes the operation needs (space-separated)')
    .option('-X, --method <method>', 'HTTP method of the operation', 'GET')
    .option('-H, --header <header>', 'extra request header, "name: value" (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('-d, --data <body>', 'request body')
    .option('--api-ca <file>', 'CA bundle of the API\'s TLS certificate (default: Tether\'s CA)')
    .option('--other-resource <uri>', 'another resource of this Tether, for the "another API\'s token" check')
    .option('--only <checks>', 'comma-separated checks to run')
    .option('--skip <checks>', 'comma-separated checks to skip')
    .option('--timeout <ms>', 'per-request timeout', '10000')
    .option('--json', 'machine-readable report')
    .option('-c, --config <file>', 'Tether configuration (default ./tether.config.yaml, else the development one); without --issuer, that Tether is run in-process')
    .option('--issuer <url>', 'use a running Tether instead (its database, for the signing key, comes from --config or DATABASE_URL)')
    .option('--ca <file>', 'with --issuer: CA bundle of Tether\'s TLS certificate')
    .option('--cert <file>', 'with --issuer: the client\'s certificate (PEM)')
    .option('--key <file>', 'with --issuer: the client\'s private key (PEM)')
    .option('--client-secret <secret>', 'with --issuer: the client\'s secret (or TETHER_CLIENT_SECRET)')
    .option('--secret-method <method>', 'with --issuer: basic or post', 'basic')
    .option('--dpop', 'with --issuer: the client\'s tokens are DPoP-bound (a key is generated)')
    .option('--upstream <url>', 'behind a gateway: the API\'s own URL for the same operation; the checks run through the gateway (<api-url>) and directly, and the report says who enforces each')
    .option('--upstream-ca <file>', 'with --upstream: CA bundle of the upstream\'s TLS certificate (default: --api-ca)')
    .action(async (apiUrl: string, options: ProbeCommandOptions) => {
      let report: ProbeReport | ThroughReport;
      try {
        report = options.issuer ? await probeWithRunningTether(apiUrl, options) : await probeWithInProcessTether(apiUrl, options);
      } catch (error) {
        err.write(`tether probe: ${(error as Error).message}\n`);
        process.exitCode = PROBE_EXIT.unusable;
        return;
      }
      out.write(`${formatReport(report, options.json === true)}\n`);
      if (!report.ok) {
        process.exitCode = PROBE_EXIT.failed;
      } else if (report.unrun > 0) {
        // A check that could not run is not a pass: never exit 0 on an incomplete probe.
        err.write(`tether probe: ${report.unrun} check${report.unrun === 1 ? '' : 's'} could not be run (see the report); not a pass\n`);
        process.exitCode = PROBE_EXIT.unusable;
      } else {
        process.exitCode = PROBE_EXIT.passed;
      }
    });
}

function formatReport(report: ProbeReport | ThroughReport, json: boolean): string {
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

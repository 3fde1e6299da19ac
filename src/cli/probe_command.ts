import type { Command } from 'commander';
import type { ProbeReport } from '../testing/probe.js';
import type { ThroughReport } from '../testing/probe_through.js';

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
      const { formatReport, probeReportOf } = await import('./probe_run.js');
      let report: ProbeReport | ThroughReport;
      try {
        report = await probeReportOf(apiUrl, options);
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

/**
 * The probe for gateway setups: the same catalogue sent through the gateway (the URL clients use)
 * and straight to the upstream API behind it, and per check who enforces it.
 *
 * - `gateway`: refused through the gateway, accepted at the upstream: the API relies on the gateway.
 * - `api`: refused at the upstream itself (and so through the gateway too), the gateway did not
 *   mark the refusal as its own.
 * - `both`: refused at the upstream, and through the gateway the refusal carried the forward-auth
 *   marker (`X-Tether-Authz: refused`, docs/gateways.md): the gateway refused it before the API saw it.
 * - `neither`: accepted through the gateway: clients can do it, whatever the upstream does directly.
 *
 * Proofs sent to the upstream name the public (gateway) URL: they are what a client that goes around
 * the gateway with a proof made for the public API would send. The report's `ok` is the gateway
 * probe's: what clients can reach is what counts; the direct column says what is left if the gateway
 * is bypassed or misconfigured.
 */
import type { AgentPool } from './agents.js';
import { runProbe, type CheckResult, type ProbeOptions, type ProbeReport, type Verdict } from './probe.js';

/** Who enforces a check. `control` for `valid`, `unknown` when either probe could not judge it. */
export type Enforcement = 'gateway' | 'api' | 'both' | 'neither' | 'control' | 'unknown';

/** One check, through the gateway and direct. */
export interface ThroughCheckResult {
  readonly id: string;
  readonly breaks: string;
  readonly sent: string;
  readonly expected: string;
  readonly gateway: CheckResult;
  readonly direct: CheckResult;
  readonly enforcedBy: Enforcement;
}

/** The report of {@link runProbeThrough}. */
export interface ThroughReport {
  /** The gateway URL (what clients use). */
  readonly url: string;
  /** The upstream URL probed directly. */
  readonly upstreamUrl: string;
  readonly method: string;
  readonly results: readonly ThroughCheckResult[];
  readonly gatewayReport: ProbeReport;
  readonly directReport: ProbeReport;
  /** Check ids by who enforces them. */
  readonly enforcement: Readonly<Record<Exclude<Enforcement, 'control'>, readonly string[]>>;
  /** The gateway probe passed: no check failed or could not be run through the gateway. */
  readonly ok: boolean;
  /** Checks that could not be run (as in {@link ProbeReport.unrun}). */
  readonly unrun: number;
}

/** Options of {@link runProbeThrough}: a probe of the gateway URL, and the upstream's. */
export interface ProbeThroughOptions extends ProbeOptions {
  /** The upstream API's own URL for the same operation, bypassing the gateway. */
  readonly upstreamUrl: string;
  /** PEM bundle of the upstream's TLS certificate, when it is https (default: `ca`). */
  readonly upstreamCa?: string;
  readonly agents?: AgentPool;
}

/** Runs the catalogue through the gateway, then directly at the upstream (one after the other). */
export async function runProbeThrough(options: ProbeThroughOptions): Promise<ThroughReport> {
  const { upstreamUrl, upstreamCa, ...gatewayOptions } = options;
  const gatewayReport = await runProbe(gatewayOptions);
  const directReport = await runProbe({ ...gatewayOptions, url: upstreamUrl, publicUrl: options.publicUrl ?? options.url, ca: upstreamCa ?? options.ca });
  const results = gatewayReport.results.map((gateway, index) => {
    const direct = directReport.results[index]!;
    return { id: gateway.id, breaks: gateway.breaks, sent: gateway.sent, expected: gateway.expected, gateway, direct, enforcedBy: enforcementOf(gateway, direct) };
  });
  const ids = (who: Enforcement) => results.filter((result) => result.enforcedBy === who).map((result) => result.id);
  return {
    url: options.url,
    upstreamUrl,
    method: gatewayReport.method,
    results,
    gatewayReport,
    directReport,
    enforcement: { gateway: ids('gateway'), api: ids('api'), both: ids('both'), neither: ids('neither'), unknown: ids('unknown') },
    ok: gatewayReport.ok,
    unrun: gatewayReport.unrun,
  };
}

const JUDGED: readonly Verdict[] = ['pass', 'fail'];

function enforcementOf(gateway: CheckResult, direct: CheckResult): Enforcement {
  if (gateway.id === 'valid') return 'control';
  if (!JUDGED.includes(gateway.verdict) || !JUDGED.includes(direct.verdict)) return 'unknown';
  if (gateway.verdict === 'fail') return 'neither';
  if (direct.verdict === 'fail') return 'gateway';
  return gateway.refusedByGateway ? 'both' : 'api';
}

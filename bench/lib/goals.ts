import type { BenchReport } from './report.js';
import { median } from './stats.js';

/**
 * The goals of issue 15, each judged from one run: MET or MISSED with the measured ratio (the median
 * over rounds of the per-round ratio) and its spread (the lowest and highest per-round ratio).
 */
export interface GoalResult {
  goal: string;
  /** e.g. "≥ 1.00" or "≤ 2.00". */
  target: string;
  status: 'MET' | 'MISSED' | 'not measured';
  ratio?: number;
  spread?: [number, number];
  detail: string;
}

interface GoalDefinition {
  goal: string;
  atLeast?: number;
  atMost?: number;
  /** The per-round ratios, or undefined when the run did not measure them. */
  ratios(report: BenchReport): { ratios: number[]; detail: string } | undefined;
}

function runsOf(report: BenchReport, subject: string) {
  return report.load?.[subject]?.runs;
}

/** Requests per second of `subject` ÷ `baseline`, round by round. */
function rpsRatios(subject: string, baseline: string) {
  return (report: BenchReport) => {
    const [a, b] = [runsOf(report, subject), runsOf(report, baseline)];
    if (!a?.length || !b?.length) return undefined;
    const count = Math.min(a.length, b.length);
    const ratios = Array.from({ length: count }, (_, i) => a[i]!.rps / b[i]!.rps);
    return { ratios, detail: `${subject} ${Math.round(median(a.map((run) => run.rps)))} req/s vs ${baseline} ${Math.round(median(b.map((run) => run.rps)))}` };
  };
}

/** Server CPU per token of `subject` ÷ `baseline`, round by round (PostgreSQL's shown beside it). */
function cpuRatios(subject: string, baseline: string) {
  return (report: BenchReport) => {
    const [a, b] = [runsOf(report, subject), runsOf(report, baseline)];
    if (!a?.length || !b?.length) return undefined;
    const count = Math.min(a.length, b.length);
    const ratios = Array.from({ length: count }, (_, i) => (a[i]!.cpuPerRequest?.server ?? Number.NaN) / (b[i]!.cpuPerRequest?.server ?? Number.NaN)).filter(Number.isFinite);
    if (!ratios.length) return undefined;
    const cpu = (runs: typeof a, key: 'server' | 'database') => {
      const values = runs.map((run) => run.cpuPerRequest?.[key]).filter((value): value is number => value !== undefined);
      return values.length ? Math.round(median(values)) : undefined;
    };
    const database = cpu(a, 'database');
    return { ratios, detail: `server CPU per token ${cpu(a, 'server')} µs${database === undefined ? '' : ` (+ PostgreSQL ${database} µs)`} vs ${cpu(b, 'server')} µs` };
  };
}

/** Cold start of `pick` ÷ the bare oidc-provider's, start by start. */
function coldRatios(name: string, pick: (report: BenchReport) => number[] | undefined) {
  return (report: BenchReport) => {
    const bare = report.coldStart?.bare;
    const values = pick(report);
    if (!bare?.length || !values?.length) return undefined;
    const bareMedian = median(bare);
    return { ratios: values.map((value) => value / bareMedian), detail: `${name} ${Math.round(median(values))} ms vs bare oidc-provider ${Math.round(bareMedian)} ms (median of ${bare.length})` };
  };
}

const GOALS: readonly GoalDefinition[] = [
  { goal: 'issuance, mTLS-bound, ledger in PostgreSQL ÷ bare oidc-provider (req/s)', atLeast: 1.0, ratios: rpsRatios('tether-pg', 'bare') },
  { goal: 'issuance, mTLS-bound, PostgreSQL ÷ bare: first bar (req/s)', atLeast: 0.85, ratios: rpsRatios('tether-pg', 'bare') },
  { goal: 'issuance, mTLS-bound: Tether server CPU per token ÷ bare\'s', atMost: 1.0, ratios: cpuRatios('tether-pg', 'bare') },
  { goal: 'issuance, DPoP-bound, PostgreSQL ÷ bare oidc-provider with DPoP (req/s)', atLeast: 1.0, ratios: rpsRatios('tether-pg-dpop', 'bare-dpop') },
  { goal: 'issuance, DPoP-bound ÷ bare with DPoP: first bar (req/s)', atLeast: 0.85, ratios: rpsRatios('tether-pg-dpop', 'bare-dpop') },
  { goal: 'issuance, DPoP-bound: Tether server CPU per token ÷ bare\'s', atMost: 1.0, ratios: cpuRatios('tether-pg-dpop', 'bare-dpop') },
  { goal: 'issuance on embedded PGlite ÷ bare oidc-provider (req/s)', atLeast: 0.5, ratios: rpsRatios('tether-pglite', 'bare') },
  { goal: 'token exchange ÷ client_credentials issuance (req/s)', atLeast: 0.8, ratios: rpsRatios('tether-pg-exchange', 'tether-pg') },
  { goal: '`tether dev` restart (compiled) to first token ÷ bare oidc-provider cold start', atMost: 2.0, ratios: coldRatios('tether dev', (report) => report.coldStart?.tetherDev) },
  { goal: '`startTether()` after the first, to first token ÷ bare oidc-provider cold start', atMost: 0.5, ratios: coldRatios('startTether()', (report) => report.coldStart?.startTether.flatMap((times) => times.furtherStartToToken)) },
  {
    goal: 'verifier `verify()`, every signature checked, ÷ node:crypto synchronous verify of the same signature',
    atLeast: 0.95,
    ratios: (report) => {
      const sequential = report.verifier?.sequential;
      if (!sequential) return undefined;
      return {
        ratios: sequential.tether.map((value, i) => value / sequential.nodeCryptoSync[i]!),
        detail: `${Math.round(median(sequential.tether))} vs ${Math.round(median(sequential.nodeCryptoSync))} verifications/s`,
      };
    },
  },
];

export function evaluateGoals(report: BenchReport): GoalResult[] {
  return GOALS.map((definition) => {
    const target = definition.atLeast !== undefined ? `≥ ${definition.atLeast.toFixed(2)}` : `≤ ${definition.atMost!.toFixed(2)}`;
    const measured = definition.ratios(report);
    if (!measured?.ratios.length) return { goal: definition.goal, target, status: 'not measured', detail: 'not part of this run' };
    const ratio = median(measured.ratios);
    const met = definition.atLeast !== undefined ? ratio >= definition.atLeast : ratio <= definition.atMost!;
    return {
      goal: definition.goal,
      target,
      status: met ? 'MET' : 'MISSED',
      ratio,
      spread: [Math.min(...measured.ratios), Math.max(...measured.ratios)],
      detail: measured.detail,
    };
  });
}

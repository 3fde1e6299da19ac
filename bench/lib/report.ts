import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { StartTetherTimes } from '../cold_start/start_tether_child.js';
import type { VerifierBenchResult } from '../verifier/verify_child.js';
import type { LoadResult } from './load_spec.js';
import { median, round } from './stats.js';

/** One "subject against baseline" line of the report. */
export interface PairRow {
  pair: string;
  subject: string;
  baseline: string;
  subjectRps: number;
  subjectP50?: number;
  subjectP99?: number;
  baselineRps: number;
  baselineP50?: number;
  baselineP99?: number;
  /** Median of the per-round ratios subject / baseline (requests or verifications per second). */
  ratio: number;
  perRoundRatios: number[];
  target?: number;
  met?: boolean;
  note: string;
  /** No non-2xx responses, errors or timeouts in any run of either side. */
  clean: boolean;
}

export interface BenchReport {
  date: string;
  quick: boolean;
  machine: {
    nproc: number;
    cpuModel: string;
    node: string;
    platform: string;
    memoryGiB: number;
    loadAverageAtStart: number[];
    loadAverageAtEnd?: number[];
  };
  settings: { connections: number; durationSeconds: number; rounds: number; warmupSeconds: number };
  pairs: PairRow[];
  load?: Record<string, {
    label: string;
    check: string;
    rps: number;
    p50: number;
    p99: number;
    /** Medians over the rounds, µs of CPU per 2xx response. */
    cpuPerRequest: { server?: number; database?: number; loadGenerator?: number };
    /** Median share of the machine's CPUs busy during the rounds (all processes). */
    machineBusy?: number;
    runs: LoadResult[];
  }>;
  ledger?: { recorded: number; received: number };
  verifier?: VerifierBenchResult;
  coldStart?: ColdStartResult;
  totalSeconds?: number;
}

/** Pair 5: milliseconds from spawn to the first token. */
export interface ColdStartResult {
  tetherDevFirstEver: number;
  /** The `tether` command (compiled), existing data folder. */
  tetherDev: number[];
  tetherDevReady: number[];
  /** `npm run dev` (tsx), existing data folder. */
  tetherDevScript: number[];
  mock: number[];
  startTether: StartTetherTimes[];
}

/** Cold-start targets of the issue, milliseconds ("about 1 s" is read as at most 1.1 s). */
export const COLD_START_TARGETS = { tetherDev: 1100, startTetherFirst: 700, startTetherFurther: 300 };

interface ColdStartLine {
  what: string;
  ms: number;
  target?: number;
  detail: string;
}

export function coldStartLines(report: BenchReport): ColdStartLine[] {
  const cold = report.coldStart;
  if (!cold) return [];
  const furtherAll = cold.startTether.flatMap((times) => times.furtherStartToToken);
  return [
    { what: '`tether dev` (the installed command: compiled), existing data folder → first token', ms: median(cold.tetherDev), target: COLD_START_TARGETS.tetherDev, detail: `runs: ${cold.tetherDev.map((ms) => round(ms)).join(', ')}; banner printed at ${round(median(cold.tetherDevReady))} ms` },
    { what: '`npm run dev` (bin/tether.js, dist/ current), existing data folder → first token', ms: median(cold.tetherDevScript), detail: `runs: ${cold.tetherDevScript.map((ms) => round(ms)).join(', ')}` },
    { what: '`tether dev`, new data folder (PKI made, database seeded) → first token', ms: cold.tetherDevFirstEver, detail: 'one run' },
    { what: 'oauth2-mock-server 9.3.0 → first token', ms: median(cold.mock), detail: `runs: ${cold.mock.map((ms) => round(ms)).join(', ')}` },
    { what: '`startTether()`, first in a process → first token', ms: median(cold.startTether.map((times) => times.firstStartToToken)), target: COLD_START_TARGETS.startTetherFirst, detail: `after importing the harness (${round(median(cold.startTether.map((times) => times.importHarness)))} ms); process start → first token ${round(median(cold.startTether.map((times) => times.processStartToFirstToken)))} ms` },
    { what: '`startTether()`, each further one → first token', ms: median(furtherAll), target: COLD_START_TARGETS.startTetherFurther, detail: `runs: ${furtherAll.map((ms) => round(ms)).join(', ')}` },
  ];
}

function verdict(met: boolean | undefined, target: string | undefined): string {
  if (target === undefined) return '';
  return `${target} ${met ? 'met' : 'MISSED'}`;
}

function fixed(value: number | undefined, digits = 0): string {
  return value === undefined || Number.isNaN(value) ? '–' : round(value, digits).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function pairCells(row: PairRow): string[] {
  return [
    row.pair,
    row.subject,
    fixed(row.subjectRps),
    fixed(row.subjectP50),
    fixed(row.subjectP99),
    row.baseline,
    fixed(row.baselineRps),
    fixed(row.baselineP50),
    fixed(row.baselineP99),
    fixed(row.ratio, 2),
    verdict(row.met, row.target === undefined ? undefined : `≥ ${row.target}`) + (row.clean ? '' : ' (errors!)'),
  ];
}

const PAIR_HEADER = ['pair', 'subject', 'req/s', 'p50 ms', 'p99 ms', 'baseline', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'target'];

function machineLine(report: BenchReport): string {
  const { machine, settings } = report;
  return `${machine.nproc} CPUs (nproc), ${machine.cpuModel}, Node ${machine.node}, ${machine.platform}; `
    + `${settings.connections} keep-alive connections, ${settings.rounds} round(s) of ${settings.durationSeconds} s per subject, medians; `
    + `load average ${machine.loadAverageAtStart.join(' ')} at start${machine.loadAverageAtEnd ? `, ${machine.loadAverageAtEnd.join(' ')} at end` : ''}`;
}

/** The plain-text table `npm run bench` prints. */
export function renderTable(report: BenchReport): string {
  const rows = [PAIR_HEADER, ...report.pairs.map(pairCells)];
  const widths = PAIR_HEADER.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const numeric = new Set([2, 3, 4, 6, 7, 8, 9]);
  const lines = rows.map((row) => row.map((cell, column) => (numeric.has(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  '));
  lines.splice(1, 0, widths.map((width) => '-'.repeat(width)).join('  '));
  const out = [`Tether benchmarks${report.quick ? ' (quick smoke run: figures are indicative only)' : ''} — ${machineLine(report)}`, '', ...lines];
  const cold = coldStartLines(report);
  if (cold.length) {
    out.push('', 'cold start (ms, median)');
    for (const line of cold) {
      out.push(`  ${line.what.replaceAll('`', '').padEnd(68)} ${fixed(line.ms).padStart(6)}  ${line.target ? verdict(line.ms <= line.target, `≤ ${line.target}`) : ''}  (${line.detail})`);
    }
  }
  if (report.ledger) out.push('', `ledger: ${report.ledger.recorded} issuance events committed in PostgreSQL for ${report.ledger.received} tokens the load generator and the checks received (at least as many events: a run's last requests may be recorded after its clock stopped)`);
  return out.join('\n');
}

/** The generated part of docs/benchmarks.md. */
export function renderMarkdown(report: BenchReport): string {
  const out = [
    `Measured ${report.date.slice(0, 10)} by \`npm run bench\` on ${machineLine(report)}. Total run time ${report.totalSeconds} s.`,
    '',
    `| ${PAIR_HEADER.join(' | ')} |`,
    `|${PAIR_HEADER.map((_, column) => ([2, 3, 4, 6, 7, 8, 9].includes(column) ? '---:' : '---')).join('|')}|`,
    ...report.pairs.map((row) => `| ${pairCells(row).join(' | ')} |`),
  ];
  const cold = coldStartLines(report);
  if (cold.length) {
    out.push('', '| cold start | ms (median) | target | detail |', '|---|---:|---|---|');
    for (const line of cold) out.push(`| ${line.what} | ${fixed(line.ms)} | ${line.target ? verdict(line.ms <= line.target, `≤ ${line.target}`) : ''} | ${line.detail} |`);
  }
  if (report.ledger) out.push('', `Ledger check: ${report.ledger.recorded} issuance events committed in PostgreSQL for ${report.ledger.received} tokens Tether returned during the run.`);
  if (report.load) {
    out.push(
      '',
      '| load subject | what it does | req/s per round | CPU µs per token: server / PostgreSQL / load generator | machine busy | check of one response |',
      '|---|---|---|---|---:|---|',
    );
    for (const [name, subject] of Object.entries(report.load)) {
      const cpu = subject.cpuPerRequest;
      out.push(`| ${name} | ${subject.label} | ${subject.runs.map((run) => fixed(run.rps)).join(', ')} | `
        + `${fixed(cpu.server)} / ${cpu.database === undefined ? '–' : fixed(cpu.database)} / ${fixed(cpu.loadGenerator)} | `
        + `${subject.machineBusy === undefined ? '–' : `${Math.round(subject.machineBusy * 100)} %`} | ${subject.check} |`);
    }
  }
  return out.join('\n');
}

const START = '<!-- bench:results:start (written by npm run bench) -->';
const END = '<!-- bench:results:end -->';

/** Replaces the generated block of docs/benchmarks.md (between the markers), keeping the prose. */
export function writeDocs(file: string, generated: string): void {
  const block = `${START}\n${generated}\n${END}`;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\n## Latest figures\n\n';
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  const next = start !== -1 && end > start ? text.slice(0, start) + block + text.slice(end + END.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}

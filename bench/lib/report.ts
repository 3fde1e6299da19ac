import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { StartTetherTimes } from '../cold_start/start_tether_child.js';
import type { VerifierBenchResult } from '../verifier/verify_child.js';
import type { InventoryResult } from '../inventory/section.js';
import type { LedgerResult } from '../ledger/section.js';
import type { ReportBenchResult } from '../report/section.js';
import type { SigningRun } from '../signing/section.js';
import type { GoalResult } from './goals.js';
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
  settings: { connections: number; durationSeconds: number; rounds: number; warmupSeconds: number; pinning: string };
  /** The goals of issue 15, each MET or MISSED. */
  goals?: GoalResult[];
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
  inventory?: InventoryResult;
  /** `tether report` at a million use events, PostgreSQL and PGlite (bench/report/section.ts). */
  exposureReport?: ReportBenchResult;
  /** The ledger path alone, per source revision (bench/ledger/section.ts). */
  ledgerPath?: LedgerResult;
  /** Access-token signing, jose against node:crypto (bench/signing/section.ts). */
  signing?: SigningRun[];
  totalSeconds?: number;
  /** Sections that failed (their error is in the log); the run is then not complete. */
  failedSections?: string[];
}

/** Pair 5: milliseconds from spawn to the first token. */
export interface ColdStartResult {
  tetherDevFirstEver: number;
  /** The `tether` command (compiled), existing data folder. */
  tetherDev: number[];
  tetherDevReady: number[];
  /** `npm run dev` (tsx), existing data folder. */
  tetherDevTsx: number[];
  mock: number[];
  /** bare oidc-provider (plain node), the baseline of the cold-start goals. */
  bare: number[];
  startTether: StartTetherTimes[];
}

interface ColdStartLine {
  what: string;
  ms: number;
  detail: string;
}

export function coldStartLines(report: BenchReport): ColdStartLine[] {
  const cold = report.coldStart;
  if (!cold) return [];
  const furtherAll = cold.startTether.flatMap((times) => times.furtherStartToToken);
  const closeAll = cold.startTether.flatMap((times) => times.close);
  return [
    { what: '`tether dev` (the installed command: compiled), existing data folder → first token', ms: median(cold.tetherDev), detail: `runs: ${cold.tetherDev.map((ms) => round(ms)).join(', ')}; banner printed at ${round(median(cold.tetherDevReady))} ms` },
    { what: '`npm run dev` (TypeScript through tsx), existing data folder → first token', ms: median(cold.tetherDevTsx), detail: `runs: ${cold.tetherDevTsx.map((ms) => round(ms)).join(', ')}` },
    { what: '`tether dev`, new data folder (PKI made, database seeded) → first token', ms: cold.tetherDevFirstEver, detail: 'one run' },
    { what: 'bare oidc-provider 9.13.3 (plain node) → first token', ms: median(cold.bare), detail: `runs: ${cold.bare.map((ms) => round(ms)).join(', ')}` },
    { what: 'oauth2-mock-server 9.3.0 → first token', ms: median(cold.mock), detail: `runs: ${cold.mock.map((ms) => round(ms)).join(', ')}` },
    { what: '`startTether()`, first in a process → first token', ms: median(cold.startTether.map((times) => times.firstStartToToken)), detail: `after importing the harness (${round(median(cold.startTether.map((times) => times.importHarness)))} ms); process start → first token ${round(median(cold.startTether.map((times) => times.processStartToFirstToken)))} ms` },
    { what: '`startTether()`, each further one → first token', ms: median(furtherAll), detail: `runs: ${furtherAll.map((ms) => round(ms)).join(', ')}` },
    { what: '`close()` of a started Tether (its database emptied for the next)', ms: median(closeAll), detail: `runs: ${closeAll.map((ms) => round(ms)).join(', ')}` },
  ];
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
    spreadOf(row.perRoundRatios) + (row.clean ? '' : ' (errors!)'),
  ];
}

function spreadOf(ratios: readonly number[]): string {
  return ratios.length ? `${fixed(Math.min(...ratios), 2)}–${fixed(Math.max(...ratios), 2)}` : '–';
}

const PAIR_HEADER = ['pair', 'subject', 'req/s', 'p50 ms', 'p99 ms', 'baseline', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'spread (min–max)'];

const GOAL_HEADER = ['goal', 'target', 'ratio', 'spread (min–max)', 'verdict', 'measured'];

function goalCells(goal: GoalResult): string[] {
  return [goal.goal, goal.target, fixed(goal.ratio, 2), goal.spread ? spreadOf(goal.spread) : '–', goal.status, goal.detail];
}

/** Inventory rows: one per query, one column per schema measured (median ms, min–max). */
function inventoryCells(inventory: InventoryResult): { header: string[]; rows: string[][] } {
  const header = ['inventory query', ...inventory.schemas.map((schema) => `ms at ${schema.schema} (median, min–max)`)];
  const rows = inventory.schemas[0]!.timings.map((timing, index) => [
    timing.query,
    ...inventory.schemas.map((schema) => {
      const ms = schema.timings[index]!.ms;
      return `${fixed(median(ms), 2)} (${fixed(Math.min(...ms), 2)}–${fixed(Math.max(...ms), 2)})`;
    }),
  ]);
  return { header, rows };
}

/** Report rows: one per query, one column per backend (median ms, min–max). */
function exposureReportCells(result: ReportBenchResult): { header: string[]; rows: string[][] } {
  const header = ['report query', ...result.results.map((backend) => `ms on ${backend.backend === 'postgres' ? 'PostgreSQL' : 'PGlite'} (median, min–max)`)];
  const rows = (result.results[0]?.timings ?? []).map((timing, index) => [
    timing.query,
    ...result.results.map((backend) => {
      const ms = backend.timings[index]!.ms;
      return `${fixed(median(ms), 2)} (${fixed(Math.min(...ms), 2)}–${fixed(Math.max(...ms), 2)})`;
    }),
  ]);
  return { header, rows };
}

function exposureReportSummary(result: ReportBenchResult): string {
  return `report: ${result.events.toLocaleString('en-US')} use events appended through appendUseEvents (${result.batchSize.toLocaleString('en-US')} a batch) over 30 days, `
    + `${result.tokens.toLocaleString('en-US')} issued tokens; `
    + result.results.map((backend) => `${backend.backend}: appended in ${backend.appendSeconds} s, ${backend.rollups.toLocaleString('en-US')} rollup rows, `
      + `${Object.entries(backend.sizesMB).map(([table, mb]) => `${table} ${mb} MB`).join(', ')}`).join('; ');
}

function inventorySummary(inventory: InventoryResult): string {
  return `inventory: ${inventory.rows.toLocaleString('en-US')} rows in issued_tokens and in ledger_events (seeded in ${inventory.seedSeconds} s); `
    + inventory.schemas.map((schema) => `at ${schema.schema}: ${Object.entries(schema.sizesMB).map(([table, mb]) => `${table} ${mb} MB`).join(', ')} with indexes`).join('; ');
}

/** The ledger path per operation and revision: medians over rounds, with min–max. */
function ledgerCells(result: LedgerResult): { header: string[]; rows: string[][] } {
  const header = ['ledger path (10 callers)', 'revision', 'per s', 'µs this process', 'µs PostgreSQL', 'µs both'];
  const rows: string[][] = [];
  const keys = [...new Set(result.runs.map((run) => `${run.operation}\u0000${run.revision}`))];
  for (const key of keys) {
    const [operation, revision] = key.split('\u0000') as [string, string];
    const runs = result.runs.filter((run) => run.operation === operation && run.revision === revision);
    const cell = (values: number[]) => `${fixed(median(values))} (${fixed(Math.min(...values))}–${fixed(Math.max(...values))})`;
    rows.push([operation, revision, cell(runs.map((run) => run.perSecond)), cell(runs.map((run) => run.processMicros)), cell(runs.map((run) => run.databaseMicros)),
      fixed(median(runs.map((run) => run.processMicros + run.databaseMicros)))]);
  }
  return { header, rows };
}

function signingCells(runs: SigningRun[]): { header: string[]; rows: string[][] } {
  const header = ['ES256 signing as oidc-provider signs a token', 'in flight', 'per s', 'µs CPU per signature'];
  const rows: string[][] = [];
  for (const key of [...new Set(runs.map((run) => `${run.inFlight}\u0000${run.key}`))]) {
    const [inFlight, name] = key.split('\u0000') as [string, string];
    const mine = runs.filter((run) => run.key === name && String(run.inFlight) === inFlight);
    const cell = (values: number[], digits = 0) => `${fixed(median(values), digits)} (${fixed(Math.min(...values), digits)}–${fixed(Math.max(...values), digits)})`;
    rows.push([name, inFlight, cell(mine.map((run) => run.perSecond)), cell(mine.map((run) => run.cpuMicros), 1)]);
  }
  return { header, rows };
}

function plainTable(header: string[], rows: string[][], numeric: ReadonlySet<number> = new Set()): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column]!.length)));
  const lines = all.map((row) => row.map((cell, column) => (numeric.has(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  '));
  lines.splice(1, 0, widths.map((width) => '-'.repeat(width)).join('  '));
  return lines;
}

function markdownTable(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)];
}

function machineLine(report: BenchReport): string {
  const { machine, settings } = report;
  return `${machine.nproc} CPUs (nproc), ${machine.cpuModel}, Node ${machine.node}, ${machine.platform}; `
    + `${settings.connections} keep-alive connections, ${settings.rounds} interleaved round(s) of ${settings.durationSeconds} s per subject, medians; ${settings.pinning}; `
    + `load average ${machine.loadAverageAtStart.join(' ')} at start${machine.loadAverageAtEnd ? `, ${machine.loadAverageAtEnd.join(' ')} at end` : ''}`;
}

/** The plain-text report `npm run bench` prints. */
export function renderTable(report: BenchReport): string {
  const out = [`Tether benchmarks${report.quick ? ' (quick smoke run: figures are indicative only)' : ''} — ${machineLine(report)}`];
  if (report.goals?.length) out.push('', ...plainTable(GOAL_HEADER, report.goals.map(goalCells), new Set([2])));
  if (report.pairs.length) out.push('', ...plainTable(PAIR_HEADER, report.pairs.map(pairCells), new Set([2, 3, 4, 6, 7, 8, 9])));
  const cold = coldStartLines(report);
  if (cold.length) {
    out.push('', 'cold start (ms, median)');
    for (const line of cold) out.push(`  ${line.what.replaceAll('`', '').padEnd(68)} ${fixed(line.ms).padStart(6)}  (${line.detail})`);
  }
  if (report.ledgerPath) {
    const { header, rows } = ledgerCells(report.ledgerPath);
    out.push('', ...plainTable(header, rows));
  }
  if (report.signing) {
    const { header, rows } = signingCells(report.signing);
    out.push('', ...plainTable(header, rows));
  }
  if (report.inventory) {
    const { header, rows } = inventoryCells(report.inventory);
    out.push('', inventorySummary(report.inventory), ...plainTable(header, rows));
  }
  if (report.exposureReport) {
    const { header, rows } = exposureReportCells(report.exposureReport);
    out.push('', exposureReportSummary(report.exposureReport), ...plainTable(header, rows));
  }
  if (report.load) {
    out.push('', 'CPU µs per token (medians over rounds): server / PostgreSQL backends / load generator');
    for (const [name, subject] of Object.entries(report.load)) {
      const cpu = subject.cpuPerRequest;
      out.push(`  ${name.padEnd(20)} ${fixed(cpu.server).padStart(6)} / ${(cpu.database === undefined ? '–' : fixed(cpu.database)).padStart(5)} / ${fixed(cpu.loadGenerator).padStart(5)}   req/s per round: ${subject.runs.map((run) => fixed(run.rps)).join(', ')}`);
    }
  }
  if (report.failedSections?.length) out.push('', `FAILED sections (see the log above): ${report.failedSections.join(', ')}`);
  if (report.ledger) out.push('', `ledger: ${report.ledger.recorded} issuance events committed in PostgreSQL for ${report.ledger.received} tokens the load generator and the checks received (at least as many events: a run's last requests may be recorded after its clock stopped)`);
  return out.join('\n');
}

/** The generated part of docs/benchmarks.md. */
export function renderMarkdown(report: BenchReport): string {
  const out = [`Measured ${report.date.slice(0, 10)} by \`npm run bench\` on ${machineLine(report)}. Total run time ${report.totalSeconds} s.`];
  if (report.goals?.length) out.push('', ...markdownTable(GOAL_HEADER, report.goals.map(goalCells)));
  if (report.pairs.length) out.push('', ...markdownTable(PAIR_HEADER, report.pairs.map(pairCells)));
  const cold = coldStartLines(report);
  if (cold.length) out.push('', ...markdownTable(['cold start', 'ms (median)', 'detail'], cold.map((line) => [line.what, fixed(line.ms), line.detail])));
  if (report.ledgerPath) {
    const { header, rows } = ledgerCells(report.ledgerPath);
    out.push('', ...markdownTable(header, rows));
  }
  if (report.signing) {
    const { header, rows } = signingCells(report.signing);
    out.push('', ...markdownTable(header, rows));
  }
  if (report.inventory) {
    const { header, rows } = inventoryCells(report.inventory);
    out.push('', `${inventorySummary(report.inventory)}.`, '', ...markdownTable(header, rows));
  }
  if (report.exposureReport) {
    const { header, rows } = exposureReportCells(report.exposureReport);
    out.push('', `${exposureReportSummary(report.exposureReport)}.`, '', ...markdownTable(header, rows));
  }
  if (report.ledger) out.push('', `Ledger check: ${report.ledger.recorded} issuance events committed in PostgreSQL for ${report.ledger.received} tokens Tether returned during the run.`);
  if (report.load) {
    out.push('', ...markdownTable(
      ['load subject', 'what it does', 'req/s per round', 'CPU µs per token: server / PostgreSQL / load generator', 'machine busy', 'check of one response'],
      Object.entries(report.load).map(([name, subject]) => {
        const cpu = subject.cpuPerRequest;
        return [name, subject.label, subject.runs.map((run) => fixed(run.rps)).join(', '),
          `${fixed(cpu.server)} / ${cpu.database === undefined ? '–' : fixed(cpu.database)} / ${fixed(cpu.loadGenerator)}`,
          subject.machineBusy === undefined ? '–' : `${Math.round(subject.machineBusy * 100)} %`, subject.check];
      }),
    ));
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

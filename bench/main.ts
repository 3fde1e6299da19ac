import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { coldStartSection } from './cold_start/section.js';
import { inventorySection } from './inventory/section.js';
import { ledgerSection } from './ledger/section.js';
import { reportSection } from './report/section.js';
import { signingSection } from './signing/section.js';
import { createContext } from './lib/context.js';
import { evaluateGoals } from './lib/goals.js';
import { isCompleteRun, type Options, type Section } from './lib/options.js';
import { REPO_ROOT } from './lib/processes.js';
import { renderMarkdown, renderTable, writeDocs, type BenchReport } from './lib/report.js';
import { median, round } from './lib/stats.js';
import { loadSection, pairRows } from './load/section.js';
import { LOAD_SUBJECTS } from './load/subjects.js';
import { verifierSection } from './verifier/section.js';

/** Median of the defined values, or undefined when there are none. */
function medianOf(values: (number | undefined)[], digits = 0): number | undefined {
  const defined = values.filter((value): value is number => value !== undefined);
  return defined.length ? round(median(defined), digits) : undefined;
}

function machine() {
  const cpuModel = os.cpus()[0]?.model ?? 'unknown';
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // nproc missing: availableParallelism is the same figure.
  }
  return { nproc, cpuModel, node: process.version, platform: `${os.type()} ${os.release()} ${os.arch()}`, memoryGiB: round(os.totalmem() / 2 ** 30, 1) };
}

/**
 * Runs the chosen sections in order, prints the report and writes it (bench/results/; the figures in
 * docs/benchmarks.md only after a complete run).
 */
export async function runBench(options: Options): Promise<void> {
  const started = Date.now();
  const context = createContext(options);
  const { log } = context;
  const report: BenchReport = {
    date: new Date().toISOString(),
    quick: options.quick,
    machine: { ...machine(), loadAverageAtStart: os.loadavg().map((value) => round(value, 2)) },
    settings: { connections: options.connections, durationSeconds: options.durationSeconds, rounds: options.rounds, warmupSeconds: options.warmupSeconds, pinning: context.pinning.description },
    pairs: [],
  };
  log(`machine: ${report.machine.nproc} CPUs, ${report.machine.cpuModel}, Node ${report.machine.node}; load average ${report.machine.loadAverageAtStart.join(' ')}; ${context.pinning.description}`);
  // A section that fails is reported and the others still run: one broken section does not lose a run's figures.
  const failed: string[] = [];
  const section = async (name: Section, run: () => Promise<void>) => {
    if (!options.sections.has(name)) return;
    try {
      await run();
    } catch (error) {
      failed.push(name);
      log(`section ${name} failed: ${(error as Error).stack ?? String(error)}`);
    }
  };
  try {
    await section('load', async () => {
      const { subjects, ledger } = await loadSection(context);
      report.load = Object.fromEntries(Object.entries(subjects).map(([name, runs]) => [name, {
        label: (LOAD_SUBJECTS.find((subject) => subject.name === name)?.label ?? `${LOAD_SUBJECTS.find((subject) => name.startsWith(`${subject.name}@`))?.label}, at ${options.compare}`)
          + (options.revision && !name.includes('@') && name.startsWith('tether') ? `, at ${options.revision}` : ''),
        check: runs.check,
        rps: median(runs.runs.map((run) => run.rps)),
        p50: median(runs.runs.map((run) => run.p50)),
        p99: median(runs.runs.map((run) => run.p99)),
        cpuPerRequest: {
          server: medianOf(runs.runs.map((run) => run.cpuPerRequest?.server)),
          database: medianOf(runs.runs.map((run) => run.cpuPerRequest?.database)),
          loadGenerator: medianOf(runs.runs.map((run) => run.cpuPerRequest?.loadGenerator)),
        },
        machineBusy: medianOf(runs.runs.map((run) => run.machineBusy), 2),
        runs: runs.runs,
      }]));
      report.ledger = ledger;
      report.pairs.push(...pairRows(subjects, options.compare));
    });
    await section('ledger', async () => { report.ledgerPath = await ledgerSection(context); });
    await section('signing', async () => { report.signing = await signingSection(context); });
    await section('verifier', async () => {
      const { result, rows } = await verifierSection(context);
      report.verifier = result;
      report.pairs.push(...rows);
    });
    await section('coldstart', async () => { report.coldStart = await coldStartSection(context); });
    await section('inventory', async () => { report.inventory = await inventorySection(context); });
    await section('report', async () => { report.exposureReport = await reportSection(context); });
  } finally {
    context.dispose();
  }
  report.failedSections = failed;
  report.goals = evaluateGoals(report);
  report.machine.loadAverageAtEnd = os.loadavg().map((value) => round(value, 2));
  report.totalSeconds = round((Date.now() - started) / 1000);

  process.stdout.write(`\n${renderTable(report)}\n`);
  // Only a complete run is "the" result; a smoke run or a partial one (some sections, some subjects,
  // a profiled server, fewer rounds) goes to its own file.
  const complete = isCompleteRun(options) && failed.length === 0;
  const file = path.join(context.resultsDir, complete ? 'latest.json' : options.quick ? 'quick.json' : 'partial.json');
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${path.relative(REPO_ROOT, file)} (${report.totalSeconds} s in all)`);
  if (complete) {
    writeDocs(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), renderMarkdown(report));
    log('updated the figures in docs/benchmarks.md');
  }
}

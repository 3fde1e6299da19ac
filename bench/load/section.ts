import path from 'node:path';
import pg from 'pg';
import { cpuBetween, machineJiffies, postgresBackendPids, processCpuMicros, snapshotCpu } from '../lib/cpu_time.js';
import { databaseUrl, type BenchContext } from '../lib/context.js';
import type { LoadResult, LoadSpec } from '../lib/load_spec.js';
import { forkTs, nextMessage, REPO_ROOT, stopChild } from '../lib/processes.js';
import type { PairRow } from '../lib/report.js';
import { median, round } from '../lib/stats.js';
import { checkoutRevision, startBaseline, startTetherDev, type RunningServer } from './servers.js';
import { LOAD_PAIRS, LOAD_SUBJECTS, revisionPairs, revisionSubjects, type LoadState, type LoadSubject } from './subjects.js';

export interface SubjectRuns {
  runs: LoadResult[];
  check: string;
}

export interface LoadSectionResult {
  subjects: Record<string, SubjectRuns>;
  ledger?: { recorded: number; received: number };
}

/**
 * One run in a fresh load-generator process pinned to the load CPU. The child prepares everything
 * (DPoP proofs included) and says `armed`; only then are the CPU times of every party read from
 * /proc — the server, the PostgreSQL backends serving its database, the load generator — and the
 * clock started; they are read again when the result arrives, and divided by the 2xx responses.
 */
async function runLoad(context: BenchContext, admin: pg.Client | undefined, spec: LoadSpec, server: RunningServer): Promise<LoadResult> {
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'load', 'load_child.ts'), [], { logFile: path.join(context.logDir, 'load.log') });
  context.pinning.pin(child.pid, 'load');
  const backends = async () => (admin && server.database ? postgresBackendPids(admin, server.database) : []);
  try {
    const armed = nextMessage(child, 'armed', 300_000);
    child.send({ type: 'prepare', spec });
    await armed;
    const message = nextMessage<{ type: 'result'; result: LoadResult }>(child, 'result', (spec.durationSeconds + 120) * 1000);
    const databaseBefore = snapshotCpu(await backends());
    const serverBefore = processCpuMicros(server.child.pid);
    const loadBefore = processCpuMicros(child.pid);
    const machineBefore = machineJiffies();
    child.send({ type: 'go' });
    const result = (await message).result;
    const machineAfter = machineJiffies();
    const loadAfter = processCpuMicros(child.pid);
    const serverAfter = processCpuMicros(server.child.pid);
    const afterPids = await backends();
    const databaseAfter = snapshotCpu([...new Set([...databaseBefore.keys(), ...afterPids])]);
    const per = (micros: number | undefined) => (micros === undefined || result.ok === 0 ? undefined : round(micros / result.ok));
    const difference = (before: number | undefined, after: number | undefined) => (before !== undefined && after !== undefined ? after - before : undefined);
    result.cpuPerRequest = {
      server: per(difference(serverBefore, serverAfter)),
      database: server.database ? per(cpuBetween(databaseBefore, databaseAfter)) : undefined,
      loadGenerator: per(difference(loadBefore, loadAfter) ?? result.loadCpuMicros),
    };
    if (server.database) result.databaseBackends = databaseAfter.size;
    if (machineBefore && machineAfter) result.machineBusy = round((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total), 2);
    return result;
  } finally {
    await stopChild(child, 2000);
  }
}

function describeRun(result: LoadResult): string {
  const problems = [result.non2xx && `${result.non2xx} non-2xx`, result.errors && `${result.errors} errors`, result.timeouts && `${result.timeouts} timeouts`].filter(Boolean);
  if (result.proofPoolExhausted) problems.push(`DPoP proof pool of ${result.proofPool} ran out: stopped after ${result.durationSeconds} s`);
  const cpu = result.cpuPerRequest;
  const cpuText = cpu ? `; CPU µs/token: server ${cpu.server ?? '?'}${cpu.database !== undefined ? `, PostgreSQL ${cpu.database} (${result.databaseBackends} backends)` : ''}, load ${cpu.loadGenerator ?? '?'}; machine ${Math.round((result.machineBusy ?? 0) * 100)} % busy` : '';
  return `${round(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms${problems.length ? ` (${problems.join(', ')})` : ''}${cpuText}`;
}

/** The database of the revision's `tether-pg` under `--compare`. */
function revisionDatabase(context: BenchContext): string {
  return `${context.benchDatabase}_rev`;
}

/** Starts the servers the chosen subjects need: Tether first (its `tether dev` makes the PKI the baselines reuse). */
async function startServers(context: BenchContext, needed: Set<string>, postgres: boolean, servers: Map<string, RunningServer>): Promise<void> {
  const ref = context.options.compare;
  const postgresOf = (database: string) => ({ url: databaseUrl(context.postgresAdminUrl, database), database });
  const mainRoot = context.options.revision ? checkoutRevision(context, context.options.revision) : undefined;
  if (needed.has('tether-pg') && postgres) servers.set('tether-pg', await startTetherDev(context, 'tether-pg', postgresOf(context.benchDatabase), mainRoot));
  if (needed.has('tether-pglite')) servers.set('tether-pglite', await startTetherDev(context, 'tether-pglite', undefined, mainRoot));
  if (ref && [...needed].some((server) => server.endsWith(`@${ref}`))) {
    const root = checkoutRevision(context, ref);
    if (needed.has(`tether-pg@${ref}`) && postgres) servers.set(`tether-pg@${ref}`, await startTetherDev(context, `tether-pg@${ref}`, postgresOf(revisionDatabase(context)), root));
    if (needed.has(`tether-pglite@${ref}`)) servers.set(`tether-pglite@${ref}`, await startTetherDev(context, `tether-pglite@${ref}`, undefined, root));
  }
  let pkiOwner = servers.get('tether-pg') ?? servers.get('tether-pglite');
  if (!pkiOwner) {
    // Only baselines asked for: a short-lived `tether dev` still makes the PKI they share.
    pkiOwner = await startTetherDev(context, 'tether-pki');
    await stopChild(pkiOwner.child);
  }
  const { pki } = pkiOwner;
  if (needed.has('bare')) servers.set('bare', await startBaseline(context, 'bare', 'bare_oidc_provider.ts', (port) => [String(port), pki.serverCertFile, pki.serverKeyFile, pki.caFile], pki));
  if (needed.has('mock')) servers.set('mock', await startBaseline(context, 'mock', 'mock_server.ts', (port) => [String(port), pki.serverCertFile, pki.serverKeyFile], pki));
}

/**
 * Every chosen subject: checked once, warmed up once, then measured in `rounds` interleaved rounds
 * (the order reverses every round, so drift on the machine hits baseline and subject alike).
 */
export async function loadSection(context: BenchContext): Promise<LoadSectionResult> {
  const { options, log } = context;
  const chosen = LOAD_SUBJECTS.filter((subject) => !options.subjects || options.subjects.has(subject.name));
  const subjects = options.compare ? [...chosen, ...revisionSubjects(chosen, options.compare)] : chosen;
  const needed = new Set(subjects.map((subject) => subject.server));
  const servers = new Map<string, RunningServer>();
  const state: LoadState = { connections: options.connections, ledgerTokensOutsideLoad: 0, warmupRates: new Map() };
  let admin: pg.Client | undefined;
  const results: Record<string, SubjectRuns> = {};
  const postgresUrl = databaseUrl(context.postgresAdminUrl, context.benchDatabase);
  const databases = [context.benchDatabase, ...(options.compare ? [revisionDatabase(context)] : [])];
  try {
    if (needed.has('tether-pg')) {
      admin = new pg.Client({ connectionString: context.postgresAdminUrl });
      try {
        await admin.connect();
        for (const database of databases) await admin.query(`CREATE DATABASE ${database}`);
      } catch (error) {
        log(`PostgreSQL at ${context.postgresAdminUrl} unavailable (${(error as Error).message}): skipping the PostgreSQL subjects`);
        await admin.end().catch(() => undefined);
        admin = undefined;
      }
    }
    await startServers(context, needed, admin !== undefined, servers);

    const active = subjects.filter((subject) => servers.has(subject.server));
    for (const subject of active) {
      const check = await subject.check(servers.get(subject.server)!, state);
      results[subject.name] = { runs: [], check };
      log(`check ${subject.name}: ${check}`);
    }
    let loadTokens = 0;
    const measure = async (subject: LoadSubject, seconds: number) => {
      const server = servers.get(subject.server)!;
      const result = await runLoad(context, admin, await subject.spec(server, seconds, state), server);
      if (subject.ledger) loadTokens += result.ok;
      return result;
    };
    for (const subject of active) {
      const warm = await measure(subject, options.warmupSeconds);
      state.warmupRates.set(subject.name, warm.rps);
      log(`warm-up ${subject.name}: ${describeRun(warm)}`);
    }
    for (let index = 0; index < options.rounds; index++) {
      const order = index % 2 === 0 ? active : [...active].reverse();
      for (const subject of order) {
        const result = await measure(subject, options.durationSeconds);
        results[subject.name]!.runs.push(result);
        log(`round ${index + 1}/${options.rounds} ${subject.name}: ${describeRun(result)}`);
      }
    }

    let ledger: LoadSectionResult['ledger'];
    if (servers.has('tether-pg')) {
      // "No token without a record": every token the load generator received has its event.
      const client = new pg.Client({ connectionString: postgresUrl });
      await client.connect();
      const { rows } = await client.query("SELECT count(*)::int AS n FROM ledger_events WHERE type IN ('token.issued', 'token.exchanged')");
      await client.end();
      ledger = { recorded: rows[0].n as number, received: loadTokens + state.ledgerTokensOutsideLoad };
      log(`ledger: ${ledger.recorded} issuance events in PostgreSQL for ${ledger.received} tokens received`);
    }
    return { subjects: results, ledger };
  } finally {
    await Promise.all([...servers.values()].map((server) => stopChild(server.child)));
    if (admin) {
      for (const database of databases) {
        await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch((error: Error) => log(`could not drop ${database}: ${error.message}`));
      }
      await admin.end();
    }
  }
}

/** Subject ÷ baseline per round (round i of one with round i of the other), and their median. */
export function pairRows(subjects: Record<string, SubjectRuns>, compare?: string): PairRow[] {
  const rows: PairRow[] = [];
  for (const definition of [...LOAD_PAIRS, ...(compare ? revisionPairs(LOAD_SUBJECTS, compare) : [])]) {
    const subject = subjects[definition.subject];
    const baseline = subjects[definition.baseline];
    if (!subject?.runs.length || !baseline?.runs.length) continue;
    const count = Math.min(subject.runs.length, baseline.runs.length);
    const ratios = Array.from({ length: count }, (_, i) => subject.runs[i]!.rps / baseline.runs[i]!.rps);
    rows.push({
      pair: definition.pair,
      subject: definition.subject,
      baseline: definition.baseline,
      subjectRps: median(subject.runs.map((run) => run.rps)),
      subjectP50: median(subject.runs.map((run) => run.p50)),
      subjectP99: median(subject.runs.map((run) => run.p99)),
      baselineRps: median(baseline.runs.map((run) => run.rps)),
      baselineP50: median(baseline.runs.map((run) => run.p50)),
      baselineP99: median(baseline.runs.map((run) => run.p99)),
      ratio: median(ratios),
      perRoundRatios: ratios,
      note: definition.note,
      clean: [...subject.runs, ...baseline.runs].every((run) => run.non2xx === 0 && run.errors === 0 && run.timeouts === 0 && !run.proofPoolExhausted),
    });
  }
  return rows;
}

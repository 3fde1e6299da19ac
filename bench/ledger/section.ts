import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { cpuBetween, postgresBackendPids, snapshotCpu } from '../lib/cpu_time.js';
import type { BenchContext } from '../lib/context.js';
import { REPO_ROOT } from '../lib/processes.js';
import { median, round } from '../lib/stats.js';
import { checkoutRevision } from '../load/servers.js';

/**
 * The ledger path alone, in this process, against PostgreSQL: the issuance record and the DPoP
 * replay check as the token path calls them (createIssuanceLedger, the replay check), by 10
 * concurrent callers (the load section's 10 connections), for each source revision given with
 * `--revisions` and the working tree, interleaved round by round. Without TLS, HTTP, signing or the
 * load generator, a change of the ledger path shows in its own CPU: this process's per operation
 * (process.cpuUsage) and the PostgreSQL backends' (pg_stat_activity → /proc).
 */
export interface LedgerRun {
  revision: string;
  /** `dpop-issuance`: a DPoP-bound token, its proof's single use and its record (one statement since the proof moved into the issuance statement, two before). */
  operation: 'issuance' | 'dpop-issuance';
  operations: number;
  seconds: number;
  perSecond: number;
  /** µs per operation in this process and in the PostgreSQL backends. */
  processMicros: number;
  databaseMicros: number;
}

export interface LedgerResult {
  callers: number;
  runs: LedgerRun[];
}

interface RevisionLedger {
  revision: string;
  database: string;
  close(): Promise<void>;
  issue(): Promise<void>;
  issueDpopBound(): Promise<void>;
}

const CALLERS = 10;

/** The revision's own modules (tsx loads them): its database opening, migrations, ledger and replay check. */
async function openRevision(context: BenchContext, revision: string, root: string, database: string): Promise<RevisionLedger> {
  const load = (file: string) => import(pathToFileURL(path.join(root, file)).href);
  // The replay check moved from storage/ to binding/; a revision has one or the other.
  const replayModule = existsSync(path.join(root, 'src/binding/dpop_replay.ts')) ? 'src/binding/dpop_replay.ts' : 'src/storage/dpop_replay.ts';
  const [{ openDatabase }, { migrateToLatest }, { createIssuanceLedger }, replay] = await Promise.all([
    load('src/storage/database.ts'), load('src/storage/migrate.ts'), load('src/ledger/issuance_recorder.ts'), load(replayModule),
  ]);
  const url = new URL(context.postgresAdminUrl);
  url.pathname = `/${database}`;
  const opened = await openDatabase({ url: url.href });
  await migrateToLatest(opened.knex);
  const ledger = createIssuanceLedger(opened.knex);
  // A revision whose token path checked the proof in a statement of its own (before it moved into
  // the issuance statement): batched (proofReplayCheck), or before that one statement per proof.
  const check = replay.proofReplayCheck ? replay.proofReplayCheck(opened.knex) : undefined;
  const separateCheck = replay.proofRecordOf === undefined;
  const facts = { requestId: 'bench', sourceAddress: '127.0.0.1', instanceId: 'bench' };
  const issue = (binding: Record<string, unknown>) => {
    const now = new Date();
    return ledger.recordIssuance({
      type: 'token.issued',
      issued: {
        value: '', format: 'jwt', tokenId: randomUUID(), clientId: 'orders-worker', resource: 'https://orders.example.test', scope: ['orders:read'],
        binding, issuedAt: now, expiresAt: new Date(now.getTime() + 300_000),
      },
    }, facts);
  };
  return {
    revision,
    database,
    close: () => opened.close(),
    issue: () => issue({ method: 'mtls', thumbprint: 'x5t-bench' }),
    issueDpopBound: async () => {
      const proof = { key: `jkt-bench\0${randomUUID()}`, expiresAt: new Date(Date.now() + 300_000) };
      if (separateCheck) {
        const first = check ? await check.recordOnce(proof) : await replay.recordProofOnce(opened.knex, proof);
        if (!first) throw new Error('a fresh proof was taken for a replay');
        return issue({ method: 'dpop', thumbprint: 'jkt-bench' });
      }
      return issue({ method: 'dpop', thumbprint: 'jkt-bench', singleUseProof: proof });
    },
  };
}

async function measure(admin: pg.Client, ledger: RevisionLedger, operation: LedgerRun['operation'], seconds: number): Promise<LedgerRun> {
  const run = operation === 'issuance' ? ledger.issue : ledger.issueDpopBound;
  const databaseBefore = snapshotCpu(await postgresBackendPids(admin, ledger.database));
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let operations = 0;
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (performance.now() < deadline) {
      await run();
      operations++;
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const databaseAfter = snapshotCpu(await postgresBackendPids(admin, ledger.database));
  return {
    revision: ledger.revision,
    operation,
    operations,
    seconds: round(elapsed, 2),
    perSecond: round(operations / elapsed),
    processMicros: round((cpu.user + cpu.system) / operations),
    databaseMicros: round(cpuBetween(databaseBefore, databaseAfter) / operations),
  };
}

export async function ledgerSection(context: BenchContext): Promise<LedgerResult | undefined> {
  const { log, options } = context;
  const revisions = [...(options.revisions ?? []), 'working tree'];
  const admin = new pg.Client({ connectionString: context.postgresAdminUrl });
  try {
    await admin.connect();
  } catch (error) {
    log(`PostgreSQL at ${context.postgresAdminUrl} unavailable (${(error as Error).message}): skipping the ledger section`);
    return undefined;
  }
  const ledgers: RevisionLedger[] = [];
  // Every database created, dropped at the end even when its revision failed to open.
  const created: string[] = [];
  // This process is the server here: on the server CPU while it measures, on every CPU afterwards.
  context.pinning.pin(process.pid, 'server');
  try {
    for (const [index, revision] of revisions.entries()) {
      const database = `${context.benchDatabase}_ledger_${index}`;
      await admin.query(`CREATE DATABASE ${database}`);
      created.push(database);
      const root = revision === 'working tree' ? REPO_ROOT : checkoutRevision(context, revision);
      ledgers.push(await openRevision(context, revision, root, database));
    }
    const runs: LedgerRun[] = [];
    const seconds = options.quick ? 1 : Math.min(options.durationSeconds, 5);
    for (const ledger of ledgers) for (const operation of ['issuance', 'dpop-issuance'] as const) await measure(admin, ledger, operation, 1); // warm-up
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? ledgers : [...ledgers].reverse();
      for (const operation of ['issuance', 'dpop-issuance'] as const) {
        for (const ledger of order) {
          const result = await measure(admin, ledger, operation, seconds);
          runs.push(result);
          log(`ledger round ${round + 1}/${options.rounds} ${operation} at ${ledger.revision}: ${result.perSecond}/s, µs per operation: this process ${result.processMicros}, PostgreSQL ${result.databaseMicros}`);
        }
      }
    }
    for (const operation of ['issuance', 'dpop-issuance'] as const) {
      for (const ledger of ledgers) {
        const mine = runs.filter((run) => run.operation === operation && run.revision === ledger.revision);
        log(`ledger ${operation} at ${ledger.revision} (medians): ${median(mine.map((run) => run.perSecond))}/s, process ${median(mine.map((run) => run.processMicros))} µs, PostgreSQL ${median(mine.map((run) => run.databaseMicros))} µs`);
      }
    }
    return { callers: CALLERS, runs };
  } finally {
    context.pinning.release(process.pid);
    await Promise.all(ledgers.map((ledger) => ledger.close().catch(() => undefined)));
    for (const database of created) {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch((error: Error) => log(`could not drop ${database}: ${error.message}`));
    }
    await admin.end();
  }
}

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Options } from './options.js';
import { cpuPinning, type Pinning } from './pinning.js';
import { REPO_ROOT } from './processes.js';

/** What every section of one run shares: its options, folders, database names, pinning and log. */
export interface BenchContext {
  options: Options;
  resultsDir: string;
  logDir: string;
  profileDir: string;
  /** Scratch folder of this run (data folders, the compiled CLI); removed by `dispose`. */
  workDir: string;
  postgresAdminUrl: string;
  /** The database the PostgreSQL load subjects use, created and dropped by the load section. */
  benchDatabase: string;
  pinning: Pinning;
  log(message: string): void;
  /** Node flags for a server child: --cpu-prof when it is the one `--profile` names. */
  nodeFlagsFor(server: string): string[];
  dispose(): void;
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function createContext(options: Options): BenchContext {
  const resultsDir = path.join(REPO_ROOT, 'bench', 'results');
  const logDir = path.join(resultsDir, 'logs');
  const profileDir = path.join(resultsDir, 'profiles');
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tether-bench-'));
  return {
    options,
    resultsDir,
    logDir,
    profileDir,
    workDir,
    postgresAdminUrl: process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    benchDatabase: `tether_bench_${process.pid}`,
    pinning: cpuPinning(log, options.noPin),
    log,
    nodeFlagsFor(server) {
      if (options.profile !== server) return [];
      mkdirSync(profileDir, { recursive: true });
      return ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${server}.cpuprofile`];
    },
    dispose: () => rmSync(workDir, { recursive: true, force: true }),
  };
}

/** The URL of `database` on the server `adminUrl` points at. */
export function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.href;
}

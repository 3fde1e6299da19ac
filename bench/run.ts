/**
 * `npm run bench` — Tether's throughput, latency and start-up time, each measured side by side with a
 * baseline in the same script on the same machine, and reported as ratios (docs/benchmarks.md).
 *
 *   npm run bench                      full run (10 s runs, 3 rounds; about 6 minutes)
 *   npm run bench -- --quick           smoke run (2 s runs, 1 round; about a minute)
 *   npm run bench -- --only load       one section: load | verifier | coldstart (comma-separated)
 *   npm run bench -- --subjects bare,tether-pg   only these load subjects
 *   npm run bench -- --profile tether-pg         node --cpu-prof on that server child
 *                                                (bench/results/profiles; see bench/profile_summary.ts)
 *   npm run bench -- --duration 15 --rounds 5
 *
 * Every server under test runs in its own child process and the load generator (autocannon) in
 * another, over loopback, with 10 keep-alive connections. Each load subject is measured in every
 * round; rounds alternate the order (ABAB… then …BABA) so that drift on the machine hits baseline and
 * subject alike. Figures are medians over rounds; a ratio is the median of the per-round ratios.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import pg from 'pg';
import { cpuBetween, machineJiffies, postgresPids, processCpuMicros, snapshotCpu } from './lib/cpu_time.js';
import { createDpopSigner, type DpopSigner } from './lib/dpop_proofs.js';
import { form, FORM_HEADERS, requestOnce, type Endpoint, type OneRequest } from './lib/https_client.js';
import type { LoadResult, LoadSpec } from './lib/load_spec.js';
import { forkTs, freePort, nextMessage, REPO_ROOT, sleep, spawnNode, stopChild, TSX } from './lib/processes.js';
import { median, round } from './lib/stats.js';
import type { ChildProcess } from 'node:child_process';
import type { StartTetherTimes } from './cold_start/start_tether_child.js';
import type { VerifierBenchInput, VerifierBenchResult } from './verifier/verify_child.js';
import { renderMarkdown, renderTable, writeDocs, type BenchReport, type ColdStartResult, type PairRow } from './lib/report.js';

// ---------------------------------------------------------------------------------------------------
// Options

type Section = 'load' | 'verifier' | 'coldstart';

interface Options {
  quick: boolean;
  durationSeconds: number;
  warmupSeconds: number;
  rounds: number;
  connections: number;
  sections: Set<Section>;
  subjects?: Set<string>;
  profile?: string;
  verifierSeconds: number;
  coldStarts: number;
}

function parseOptions(argv: string[]): Options {
  const value = (name: string) => {
    const at = argv.indexOf(name);
    return at === -1 ? undefined : argv[at + 1];
  };
  const quick = argv.includes('--quick');
  const list = (name: string) => value(name)?.split(',').map((item) => item.trim()).filter(Boolean);
  const sections = new Set((list('--only') ?? ['load', 'verifier', 'coldstart']) as Section[]);
  for (const section of sections) {
    if (!['load', 'verifier', 'coldstart'].includes(section)) throw new Error(`--only: unknown section ${section}`);
  }
  return {
    quick,
    durationSeconds: Number(value('--duration') ?? (quick ? 2 : 10)),
    warmupSeconds: quick ? 1 : 3,
    rounds: Number(value('--rounds') ?? (quick ? 1 : 3)),
    connections: 10,
    sections,
    subjects: list('--subjects') && new Set(list('--subjects')),
    profile: value('--profile'),
    verifierSeconds: quick ? 0.5 : 3,
    coldStarts: quick ? 2 : 5,
  };
}

const options = parseOptions(process.argv.slice(2));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');
const LOG_DIR = path.join(RESULTS_DIR, 'logs');
const PROFILE_DIR = path.join(RESULTS_DIR, 'profiles');
rmSync(LOG_DIR, { recursive: true, force: true });
mkdirSync(LOG_DIR, { recursive: true });
const workDir = mkdtempSync(path.join(os.tmpdir(), 'tether-bench-'));
const POSTGRES_ADMIN_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const BENCH_DATABASE = `tether_bench_${process.pid}`;

const ORDERS = 'https://orders.example.test';
const PAYMENTS = 'https://payments.example.test';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REPORTING_CLI_BASIC = `Basic ${Buffer.from('reporting-cli:dev-only-secret-reporting-cli-0001').toString('base64')}`;

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function nodeFlagsFor(server: string): string[] {
  if (options.profile !== server) return [];
  mkdirSync(PROFILE_DIR, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${server}.cpuprofile`];
}

// ---------------------------------------------------------------------------------------------------
// Servers under test

interface Pki {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  client(name: string): { certFile: string; keyFile: string; thumbprint: string };
}

function pkiIn(directory: string): Pki {
  return {
    caFile: path.join(directory, 'ca.pem'),
    serverCertFile: path.join(directory, 'server.pem'),
    serverKeyFile: path.join(directory, 'server.key.pem'),
    client(name) {
      const certFile = path.join(directory, 'clients', `${name}.pem`);
      const der = new X509Certificate(readFileSync(certFile)).raw;
      return { certFile, keyFile: path.join(directory, 'clients', `${name}.key.pem`), thumbprint: createHash('sha256').update(der).digest('base64url') };
    },
  };
}

interface RunningServer {
  name: string;
  endpoint: Endpoint;
  /** The host:port the issuer names (Host header, DPoP htu). */
  host: string;
  pki: Pki;
  child: ChildProcess;
  httpOrigin?: string;
}

/** `tether dev` itself (src/main.ts through tsx, as `npm run dev`), on PostgreSQL or its embedded PGlite. */
async function startTetherDev(name: string, databaseUrl: string | undefined): Promise<RunningServer> {
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const dataDir = path.join(workDir, name);
  const child = spawnNode([...TSX, 'src/main.ts', 'dev'], {
    nodeFlags: nodeFlagsFor(name),
    env: {
      TETHER_DATA_DIR: dataDir,
      TETHER_HTTPS_PORT: String(httpsPort),
      TETHER_HTTP_PORT: String(httpPort),
      TETHER_ISSUER: `https://localhost:${httpsPort}`,
      TETHER_LOG_LEVEL: 'info',
      DATABASE_URL: databaseUrl ?? '',
    },
    logFile: path.join(LOG_DIR, `${name}.log`),
  });
  const httpOrigin = `http://127.0.0.1:${httpPort}`;
  await waitUntil(async () => (await requestOnce({ origin: httpOrigin, host: `localhost:${httpPort}` }, { path: '/readyz', timeoutMs: 1000 })).status === 200, child, 60_000, name);
  return {
    name,
    endpoint: { origin: `https://127.0.0.1:${httpsPort}`, host: `localhost:${httpsPort}`, caFile: pkiIn(path.join(dataDir, 'pki')).caFile },
    host: `localhost:${httpsPort}`,
    pki: pkiIn(path.join(dataDir, 'pki')),
    child,
    httpOrigin,
  };
}

/** A baseline server module from bench/servers/, forked; it says `ready` over IPC. */
async function startForked(name: string, module: string, args: (port: number) => string[], pki: Pki): Promise<RunningServer> {
  const port = await freePort();
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'servers', module), args(port), {
    nodeFlags: nodeFlagsFor(name),
    logFile: path.join(LOG_DIR, `${name}.log`),
  });
  await nextMessage(child, 'ready', 60_000);
  return { name, endpoint: { origin: `https://127.0.0.1:${port}`, host: `localhost:${port}`, caFile: pki.caFile }, host: `localhost:${port}`, pki, child };
}

async function waitUntil(check: () => Promise<boolean>, child: ChildProcess, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} (see bench/results/logs/${what}.log)`);
    if (await check().catch(() => false)) return;
    await sleep(20);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------------------
// Load subjects: what is requested from which server, and how one response is checked

interface LoadSubject {
  name: string;
  label: string;
  server: string;
  /** The load spec for one run (token exchange fetches a fresh subject token each time). */
  spec(server: RunningServer, durationSeconds: number): Promise<LoadSpec>;
  /** One request outside the clock; throws unless the response is the token this subject claims to issue. */
  check(server: RunningServer): Promise<string>;
  /** Whether the tokens it gets must each have a ledger record in PostgreSQL. */
  ledger?: boolean;
}

function clientCredentialsBody(extra: Record<string, string> = {}): string {
  return form({ grant_type: 'client_credentials', client_id: 'orders-worker', resource: ORDERS, scope: 'orders:read', ...extra });
}

function mtlsSpec(server: RunningServer, durationSeconds: number, client = 'orders-worker', body = clientCredentialsBody()): LoadSpec {
  const files = server.pki.client(client);
  return {
    url: `${server.endpoint.origin}/token`,
    host: server.host,
    method: 'POST',
    headers: FORM_HEADERS,
    body,
    clientCertFile: files.certFile,
    clientKeyFile: files.keyFile,
    connections: options.connections,
    durationSeconds,
  };
}

function expect(condition: unknown, message: string): void {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Requests one client_credentials token with the orders-worker certificate and checks it is bound to it. */
async function checkMtlsToken(server: RunningServer, expectTyp = 'at+jwt'): Promise<string> {
  const files = server.pki.client('orders-worker');
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token', headers: FORM_HEADERS, body: clientCredentialsBody(), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
  });
  expect(response.status === 200, `${server.name}: status ${response.status} ${response.text}`);
  const token = response.json().access_token as string;
  const header = decodeProtectedHeader(token);
  const claims = decodeJwt(token) as Record<string, unknown>;
  expect(header.alg === 'ES256' && header.typ === expectTyp, `${server.name}: header ${JSON.stringify(header)}`);
  expect(claims.aud === ORDERS || (Array.isArray(claims.aud) && claims.aud[0] === ORDERS), `${server.name}: aud ${JSON.stringify(claims.aud)}`);
  expect((claims.cnf as Record<string, string> | undefined)?.['x5t#S256'] === files.thumbprint, `${server.name}: cnf ${JSON.stringify(claims.cnf)}`);
  return `ES256 ${expectTyp}, aud ${ORDERS}, cnf.x5t#S256 = client certificate`;
}

/**
 * A token from orders-worker for the payments API, which payments-api serves and so may exchange
 * (dev config: servedBy, actFor, acceptBoundSubjectTokens).
 */
async function subjectToken(server: RunningServer): Promise<string> {
  const files = server.pki.client('orders-worker');
  const body = clientCredentialsBody({ resource: PAYMENTS, scope: 'payments:charge orders:read' });
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token', headers: FORM_HEADERS, body, clientCertFile: files.certFile, clientKeyFile: files.keyFile,
  });
  if (response.status !== 200) throw new Error(`subject token: ${response.status} ${response.text}`);
  ledgerTokensOutsideLoad++;
  return response.json().access_token as string;
}

function exchangeBody(subject: string): string {
  return form({
    grant_type: TOKEN_EXCHANGE, client_id: 'payments-api', subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: ORDERS, scope: 'orders:read',
  });
}

let dpopSigner: DpopSigner | undefined;

function dpopSpec(server: RunningServer, durationSeconds: number, subject: string): LoadSpec {
  return {
    url: `${server.endpoint.origin}/token`,
    host: server.host,
    method: 'POST',
    headers: { ...FORM_HEADERS, authorization: REPORTING_CLI_BASIC },
    body: form({ grant_type: 'client_credentials', resource: ORDERS, scope: 'orders:read' }),
    connections: options.connections,
    durationSeconds,
    dpopHtu: `https://${server.host}/token`,
    expectedRate: warmupRates.get(subject),
  };
}

/** One DPoP-bound token for reporting-cli (client secret), checked to be bound to the proof's key. */
async function checkDpopToken(server: RunningServer): Promise<string> {
  dpopSigner ??= createDpopSigner();
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token',
    headers: { ...FORM_HEADERS, authorization: REPORTING_CLI_BASIC, dpop: dpopSigner.proof('POST', `https://${server.host}/token`) },
    body: form({ grant_type: 'client_credentials', resource: ORDERS, scope: 'orders:read' }),
  });
  expect(response.status === 200, `${server.name} dpop: status ${response.status} ${response.text}`);
  const body = response.json();
  const header = decodeProtectedHeader(body.access_token as string);
  const claims = decodeJwt(body.access_token as string) as Record<string, unknown>;
  expect(header.alg === 'ES256' && header.typ === 'at+jwt', `${server.name} dpop: header ${JSON.stringify(header)}`);
  expect(body.token_type === 'DPoP' && (claims.cnf as Record<string, string>)?.jkt === dpopSigner.thumbprint, `${server.name} dpop: ${JSON.stringify(claims.cnf)}`);
  return 'ES256 at+jwt, token_type DPoP, cnf.jkt = proof key; a fresh proof per request';
}
/** Tokens Tether issued outside the load runs (checks, subject tokens), for the ledger reconciliation. */
let ledgerTokensOutsideLoad = 0;
const warmupRates = new Map<string, number>();

const LOAD_SUBJECTS: LoadSubject[] = [
  {
    name: 'bare',
    label: 'bare oidc-provider 9.13.3 (mTLS-bound JWT, memory adapter, no ledger)',
    server: 'bare',
    spec: async (server, seconds) => mtlsSpec(server, seconds),
    check: (server) => checkMtlsToken(server),
  },
  {
    name: 'tether-pg',
    label: 'Tether client_credentials, mTLS-bound JWT, ledger in PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds) => mtlsSpec(server, seconds),
    check: async (server) => { ledgerTokensOutsideLoad++; return checkMtlsToken(server); },
  },
  {
    name: 'tether-pglite',
    label: 'Tether client_credentials, mTLS-bound JWT, embedded PGlite',
    server: 'tether-pglite',
    spec: async (server, seconds) => mtlsSpec(server, seconds),
    check: (server) => checkMtlsToken(server),
  },
  {
    name: 'bare-dpop',
    label: 'bare oidc-provider 9.13.3 (DPoP-bound JWT, client secret, proofs replay-checked in memory, no ledger)',
    server: 'bare',
    spec: async (server, seconds) => dpopSpec(server, seconds, 'bare-dpop'),
    check: (server) => checkDpopToken(server),
  },
  {
    name: 'tether-pg-dpop',
    label: 'Tether client_credentials, DPoP-bound JWT (client secret), PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds) => dpopSpec(server, seconds, 'tether-pg-dpop'),
    check: async (server) => {
      ledgerTokensOutsideLoad++;
      return `${await checkDpopToken(server)} (replay-checked in PostgreSQL)`;
    },
  },
  {
    name: 'tether-pg-exchange',
    label: 'Tether token exchange (RFC 8693), mTLS-bound, PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds) => mtlsSpec(server, seconds, 'payments-api', exchangeBody(await subjectToken(server))),
    check: async (server) => {
      const files = server.pki.client('payments-api');
      const response = await requestOnce(server.endpoint, {
        method: 'POST', path: '/token', headers: FORM_HEADERS, body: exchangeBody(await subjectToken(server)), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
      });
      expect(response.status === 200, `exchange: status ${response.status} ${response.text}`);
      const claims = decodeJwt(response.json().access_token as string) as Record<string, unknown>;
      expect((claims.act as Record<string, string>)?.sub === 'payments-api' && claims.sub === 'orders-worker', `exchange: ${JSON.stringify(claims)}`);
      expect((claims.cnf as Record<string, string>)?.['x5t#S256'] === files.thumbprint, 'exchange: cnf');
      ledgerTokensOutsideLoad++;
      return 'sub orders-worker, act.sub payments-api, cnf.x5t#S256 = payments-api certificate';
    },
  },
  {
    name: 'mock',
    label: 'oauth2-mock-server 9.3.0 (plain client_credentials JWT, ES256)',
    server: 'mock',
    spec: async (server, seconds) => ({
      ...mtlsSpec(server, seconds),
      body: form({ grant_type: 'client_credentials', client_id: 'orders-worker', scope: 'orders:read', aud: ORDERS }),
    }),
    check: async (server) => {
      const response = await requestOnce(server.endpoint, {
        method: 'POST', path: '/token', headers: FORM_HEADERS, body: form({ grant_type: 'client_credentials', client_id: 'orders-worker', scope: 'orders:read', aud: ORDERS }),
      });
      expect(response.status === 200, `mock: status ${response.status} ${response.text}`);
      expect(decodeProtectedHeader(response.json().access_token as string).alg === 'ES256', 'mock: alg');
      return 'ES256 JWT, no client authentication, no binding, no record';
    },
  },
  {
    name: 'tether-pg-newconn',
    label: 'Tether client_credentials (as tether-pg), new TLS connection with client certificate per request',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds) => ({ ...mtlsSpec(server, seconds), newConnectionPerRequest: true }),
    check: async () => 'as tether-pg',
  },
];

interface PairDefinition {
  pair: string;
  subject: string;
  baseline: string;
  target?: number;
  note: string;
}

const LOAD_PAIRS: PairDefinition[] = [
  { pair: '1 issuance', subject: 'tether-pg', baseline: 'bare', target: 0.8, note: 'same token, same TLS transport; Tether also records it in PostgreSQL' },
  { pair: '1 issuance (PGlite)', subject: 'tether-pglite', baseline: 'bare', note: 'embedded database, same process' },
  { pair: '1 issuance (DPoP)', subject: 'tether-pg-dpop', baseline: 'bare-dpop', note: 'DPoP proof verified and replay-checked per request' },
  { pair: '2 vs mock', subject: 'tether-pg', baseline: 'mock', target: 1.2, note: 'the mock checks nothing and records nothing' },
  { pair: '3 token exchange', subject: 'tether-pg-exchange', baseline: 'tether-pg', note: 'subject token verified and its lineage read from the ledger' },
  { pair: '6 handshake', subject: 'tether-pg-newconn', baseline: 'tether-pg', note: 'full TLS handshake with client certificate per request vs keep-alive' },
];

// ---------------------------------------------------------------------------------------------------
// Load section

interface SubjectRuns {
  runs: LoadResult[];
  check: string;
}

/**
 * One run in a fresh load-generator process. The CPU time the server (and, for PostgreSQL, the
 * database backends) used meanwhile is read from /proc and divided by the responses received.
 */
async function runLoad(spec: LoadSpec, server: RunningServer): Promise<LoadResult> {
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'load', 'load_child.ts'), [], { logFile: path.join(LOG_DIR, 'load.log') });
  const message = nextMessage<{ type: 'result'; result: LoadResult }>(child, 'result', (spec.durationSeconds + 120) * 1000);
  const databasePids = () => (server.name === 'tether-pg' ? postgresPids(BENCH_DATABASE) : []);
  const serverBefore = processCpuMicros(server.child.pid);
  const databaseBefore = snapshotCpu(databasePids());
  const machineBefore = machineJiffies();
  child.send({ spec });
  try {
    const result = (await message).result;
    const serverAfter = processCpuMicros(server.child.pid);
    const databaseAfter = snapshotCpu(databasePids());
    const machineAfter = machineJiffies();
    const per = (micros: number | undefined) => (micros === undefined || result.ok === 0 ? undefined : round(micros / result.ok));
    result.cpuPerRequest = {
      server: per(serverBefore !== undefined && serverAfter !== undefined ? serverAfter - serverBefore : undefined),
      database: server.name === 'tether-pg' ? per(cpuBetween(databaseBefore, databaseAfter)) : undefined,
      loadGenerator: per(result.loadCpuMicros),
    };
    if (machineBefore && machineAfter) result.machineBusy = round((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total), 2);
    return result;
  } finally {
    await stopChild(child, 2000);
  }
}

function describeRun(result: LoadResult): string {
  const problems = [result.non2xx && `${result.non2xx} non-2xx`, result.errors && `${result.errors} errors`, result.timeouts && `${result.timeouts} timeouts`].filter(Boolean);
  const cpu = result.cpuPerRequest;
  const cpuText = cpu ? `; CPU µs/request: server ${cpu.server ?? '?'}${cpu.database !== undefined ? `, PostgreSQL ${cpu.database}` : ''}, load ${cpu.loadGenerator ?? '?'}; machine ${Math.round((result.machineBusy ?? 0) * 100)} % busy` : '';
  return `${round(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms${problems.length ? ` (${problems.join(', ')})` : ''}${cpuText}`;
}

async function loadSection(): Promise<{ subjects: Record<string, SubjectRuns>; ledger?: { recorded: number; received: number } }> {
  const subjects = LOAD_SUBJECTS.filter((subject) => !options.subjects || options.subjects.has(subject.name));
  const needed = new Set(subjects.map((subject) => subject.server));
  const servers = new Map<string, RunningServer>();
  let admin: pg.Client | undefined;
  const results: Record<string, SubjectRuns> = {};
  try {
    if (needed.has('tether-pg')) {
      admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      try {
        await admin.connect();
        await admin.query(`CREATE DATABASE ${BENCH_DATABASE}`);
      } catch (error) {
        log(`PostgreSQL at ${POSTGRES_ADMIN_URL} unavailable (${(error as Error).message}): skipping the PostgreSQL subjects`);
        admin = undefined;
        needed.delete('tether-pg');
      }
    }
    const databaseUrl = new URL(POSTGRES_ADMIN_URL);
    databaseUrl.pathname = `/${BENCH_DATABASE}`;

    // Tether first: its `tether dev` makes the development PKI the baselines reuse (same certificates and keys).
    if (needed.has('tether-pg')) servers.set('tether-pg', await startTetherDev('tether-pg', databaseUrl.href));
    if (needed.has('tether-pglite')) servers.set('tether-pglite', await startTetherDev('tether-pglite', undefined));
    let pkiOwner = servers.get('tether-pg') ?? servers.get('tether-pglite');
    if (!pkiOwner) {
      // Only baselines asked for: a short-lived `tether dev` still makes the PKI they share.
      pkiOwner = await startTetherDev('tether-pki', undefined);
      await stopChild(pkiOwner.child);
    }
    const { pki } = pkiOwner;
    if (needed.has('bare')) servers.set('bare', await startForked('bare', 'bare_oidc_provider.ts', (port) => [String(port), pki.serverCertFile, pki.serverKeyFile, pki.caFile], pki));
    if (needed.has('mock')) servers.set('mock', await startForked('mock', 'mock_server.ts', (port) => [String(port), pki.serverCertFile, pki.serverKeyFile], pki));

    const active = subjects.filter((subject) => servers.has(subject.server));
    for (const subject of active) {
      const check = await subject.check(servers.get(subject.server)!);
      results[subject.name] = { runs: [], check };
      log(`check ${subject.name}: ${check}`);
    }
    let loadTokens = 0;
    for (const subject of active) {
      const warm = await runLoad(await subject.spec(servers.get(subject.server)!, options.warmupSeconds), servers.get(subject.server)!);
      warmupRates.set(subject.name, warm.rps);
      if (subject.ledger) loadTokens += warm.ok;
      log(`warm-up ${subject.name}: ${describeRun(warm)}`);
    }
    for (let index = 0; index < options.rounds; index++) {
      const order = index % 2 === 0 ? active : [...active].reverse();
      for (const subject of order) {
        const result = await runLoad(await subject.spec(servers.get(subject.server)!, options.durationSeconds), servers.get(subject.server)!);
        results[subject.name]!.runs.push(result);
        if (subject.ledger) loadTokens += result.ok;
        log(`round ${index + 1}/${options.rounds} ${subject.name}: ${describeRun(result)}${result.proofsSignedDuringRun ? ` (${result.proofsSignedDuringRun} proofs signed during the run)` : ''}`);
      }
    }

    let ledger: { recorded: number; received: number } | undefined;
    if (servers.has('tether-pg') && admin) {
      // "No token without a record": every token the load generator received has its event.
      const client = new pg.Client({ connectionString: databaseUrl.href });
      await client.connect();
      const { rows } = await client.query("SELECT count(*)::int AS n FROM ledger_events WHERE type IN ('token.issued', 'token.exchanged')");
      await client.end();
      ledger = { recorded: rows[0].n as number, received: loadTokens + ledgerTokensOutsideLoad };
      log(`ledger: ${ledger.recorded} issuance events in PostgreSQL for ${ledger.received} tokens received`);
    }
    return { subjects: results, ledger };
  } finally {
    await Promise.all([...servers.values()].map((server) => stopChild(server.child)));
    if (admin) {
      await admin.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`).catch((error: Error) => log(`could not drop ${BENCH_DATABASE}: ${error.message}`));
      await admin.end();
    }
  }
}

function pairRows(subjects: Record<string, SubjectRuns>): PairRow[] {
  const rows: PairRow[] = [];
  for (const definition of LOAD_PAIRS) {
    const subject = subjects[definition.subject];
    const baseline = subjects[definition.baseline];
    if (!subject?.runs.length || !baseline?.runs.length) continue;
    const count = Math.min(subject.runs.length, baseline.runs.length);
    const ratios = Array.from({ length: count }, (_, i) => subject.runs[i]!.rps / baseline.runs[i]!.rps);
    const ratio = median(ratios);
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
      ratio,
      perRoundRatios: ratios,
      target: definition.target,
      met: definition.target === undefined ? undefined : ratio >= definition.target,
      note: definition.note,
      clean: [...subject.runs, ...baseline.runs].every((run) => run.non2xx === 0 && run.errors === 0 && run.timeouts === 0),
    });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// Verifier section (pair 4)

/**
 * What verify() would do per second in each round with its signature step swapped for the
 * synchronous node:crypto one: its time per verification, less WebCrypto's, plus node:crypto's.
 */
function projectedRates(result: VerifierBenchResult): number[] {
  const { tether, webCrypto, nodeCryptoSync } = result.sequential;
  return tether.map((rate, i) => 1 / (1 / rate - 1 / webCrypto[i]! + 1 / nodeCryptoSync[i]!));
}

async function verifierSection(): Promise<{ result: VerifierBenchResult; rows: PairRow[] }> {
  // A real Tether token: from a PGlite `tether dev`, bound to the orders-worker certificate.
  const server = await startTetherDev('tether-verifier-issuer', undefined);
  let input: VerifierBenchInput;
  try {
    const files = server.pki.client('orders-worker');
    const response = await requestOnce(server.endpoint, {
      method: 'POST', path: '/token', headers: FORM_HEADERS, body: clientCredentialsBody(), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
    });
    if (response.status !== 200) throw new Error(`verifier token: ${response.status} ${response.text}`);
    const jwks = (await requestOnce(server.endpoint, { path: '/jwks' })).json() as { keys: never[] };
    input = {
      token: response.json().access_token as string,
      jwks,
      thumbprint: files.thumbprint,
      issuer: `https://${server.host}`,
      audience: ORDERS,
      // Interleaved rounds: at least five, so that a ratio is a median of five side-by-side measurements.
      rounds: options.quick ? 1 : Math.max(5, options.rounds),
      seconds: options.verifierSeconds,
    };
  } finally {
    await stopChild(server.child);
  }
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'verifier', 'verify_child.ts'), [], { logFile: path.join(LOG_DIR, 'verifier.log') });
  const done = nextMessage<{ type: 'result'; result: VerifierBenchResult }>(child, 'result', 600_000);
  child.send(input);
  const { result } = await done;
  await stopChild(child, 2000);
  const ratioOf = (a: number[], b: number[]) => median(a.map((value, i) => value / b[i]!));
  const rows: PairRow[] = [
    {
      pair: '4 verifier', subject: 'tether verify()', baseline: 'jose.jwtVerify',
      subjectRps: median(result.sequential.tether), baselineRps: median(result.sequential.jose),
      ratio: ratioOf(result.sequential.tether, result.sequential.jose), perRoundRatios: result.sequential.tether.map((v, i) => v / result.sequential.jose[i]!),
      target: 0.9, met: ratioOf(result.sequential.tether, result.sequential.jose) >= 0.9,
      note: 'one at a time, mTLS-bound token, binding checked', clean: true,
    },
    {
      pair: '4 verifier (10 in flight)', subject: 'tether verify()', baseline: 'jose.jwtVerify',
      subjectRps: median(result.concurrent10.tether), baselineRps: median(result.concurrent10.jose),
      ratio: ratioOf(result.concurrent10.tether, result.concurrent10.jose), perRoundRatios: result.concurrent10.tether.map((v, i) => v / result.concurrent10.jose[i]!),
      note: '10 verifications in flight', clean: true,
    },
    {
      pair: '4 ceiling', subject: 'tether verify()', baseline: 'node:crypto verify (sync)',
      subjectRps: median(result.sequential.tether), baselineRps: median(result.sequential.nodeCryptoSync),
      ratio: ratioOf(result.sequential.tether, result.sequential.nodeCryptoSync), perRoundRatios: result.sequential.tether.map((v, i) => v / result.sequential.nodeCryptoSync[i]!),
      note: 'signature check alone, no claims: the ceiling', clean: true,
    },
    {
      pair: '4 signature step', subject: 'node:crypto verify (sync, cached KeyObject)', baseline: 'WebCrypto verify (what jose calls)',
      subjectRps: median(result.sequential.nodeCryptoSync), baselineRps: median(result.sequential.webCrypto),
      ratio: ratioOf(result.sequential.nodeCryptoSync, result.sequential.webCrypto), perRoundRatios: result.sequential.nodeCryptoSync.map((v, i) => v / result.sequential.webCrypto[i]!),
      note: 'the one step the verifier could hand-write', clean: true,
    },
    {
      pair: '4 signature step (10 in flight)', subject: 'node:crypto verify (sync, cached KeyObject)', baseline: 'WebCrypto verify (what jose calls)',
      subjectRps: median(result.concurrent10.nodeCryptoSync), baselineRps: median(result.concurrent10.webCrypto),
      ratio: ratioOf(result.concurrent10.nodeCryptoSync, result.concurrent10.webCrypto), perRoundRatios: result.concurrent10.nodeCryptoSync.map((v, i) => v / result.concurrent10.webCrypto[i]!),
      note: 'WebCrypto uses the thread pool; a sync verify holds the event loop', clean: true,
    },
    {
      pair: '4 hand-written gain', subject: 'verify() with a sync signature step (projected)', baseline: 'tether verify() (on jose)',
      subjectRps: median(projectedRates(result)), baselineRps: median(result.sequential.tether),
      ratio: ratioOf(projectedRates(result), result.sequential.tether), perRoundRatios: projectedRates(result).map((v, i) => v / result.sequential.tether[i]!),
      note: 'per round: 1 / (t_verify - t_webcrypto + t_sync); keep jose unless clearly above 1', clean: true,
    },
  ];
  return { result, rows };
}

// ---------------------------------------------------------------------------------------------------
// Cold start section (pair 5)

/** Spawns a server and requests a token until one arrives; returns ms from spawn to that token. */
async function timeToFirstToken(launch: () => ChildProcess, endpoint: Endpoint, request: () => OneRequest, readyLine?: RegExp): Promise<{ token: number; ready?: number; child: ChildProcess }> {
  const started = performance.now();
  const child = launch();
  let ready: number | undefined;
  if (readyLine) {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (ready === undefined && readyLine.test(chunk.toString())) ready = performance.now() - started;
    });
  }
  const deadline = started + 60_000;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before its first token`);
    // Before the server listens (or, on a first start, before its PKI files exist) this fails: try again.
    const response = await (async () => requestOnce(endpoint, { ...request(), timeoutMs: 5000 }))().catch(() => undefined);
    if (response?.status === 200) return { token: performance.now() - started, ready, child };
    if (response) throw new Error(`first token: ${response.status} ${response.text}`);
    await sleep(5);
  }
  throw new Error('no token within 60 s');
}

/**
 * The installed `tether` command runs the compiled CLI (bin/tether.js → dist/); `npm run dev` runs the
 * TypeScript through tsx. The compiled one is built here into the work folder, never into dist/.
 */
function buildCompiledCli(): string {
  const buildDir = path.join(workDir, 'build');
  mkdirSync(buildDir, { recursive: true });
  const tsc = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', path.join(buildDir, 'dist')], { cwd: REPO_ROOT, encoding: 'utf8' });
  const main = path.join(buildDir, 'dist', 'src', 'main.js');
  if (!existsSync(main)) throw new Error(`could not compile the CLI: ${tsc.stdout}${tsc.stderr}`);
  // What an installed package has next to dist/: its package.json ("type": "module"), migrations, dependencies.
  copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(buildDir, 'package.json'));
  symlinkSync(path.join(REPO_ROOT, 'migrations'), path.join(buildDir, 'migrations'));
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(buildDir, 'node_modules'));
  return main;
}

async function coldStartSection(): Promise<ColdStartResult> {
  const dataDir = path.join(workDir, 'cold-dev');
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    TETHER_DATA_DIR: dataDir, TETHER_HTTPS_PORT: String(httpsPort), TETHER_HTTP_PORT: String(httpPort),
    TETHER_ISSUER: `https://localhost:${httpsPort}`, DATABASE_URL: '',
  };
  const compiledMain = buildCompiledCli();
  const launchTsx = () => spawnNode([...TSX, 'src/main.ts', 'dev'], { env, logFile: path.join(LOG_DIR, 'cold-dev.log') });
  const launchCompiled = () => spawnNode([compiledMain, 'dev'], { env, logFile: path.join(LOG_DIR, 'cold-dev.log') });
  const endpoint: Endpoint = { origin: `https://127.0.0.1:${httpsPort}`, host: `localhost:${httpsPort}`, caFile: path.join(dataDir, 'pki', 'ca.pem') };
  const pki = pkiIn(path.join(dataDir, 'pki'));
  const tokenRequest = (): OneRequest => {
    const files = pki.client('orders-worker');
    return { method: 'POST', path: '/token', headers: FORM_HEADERS, body: clientCredentialsBody(), clientCertFile: files.certFile, clientKeyFile: files.keyFile };
  };
  // The PKI files do not exist before the first start: that first request waits for them.
  const firstEver = await timeToFirstToken(launchCompiled, { ...endpoint, caFile: undefined }, tokenRequest);
  await stopChild(firstEver.child);
  log(`cold start: tether dev on a new data folder ${round(firstEver.token)} ms`);

  const result: ColdStartResult = { tetherDevFirstEver: firstEver.token, tetherDev: [], tetherDevReady: [], tetherDevTsx: [], mock: [], startTether: [] };
  for (let i = 0; i < options.coldStarts; i++) {
    const compiled = await timeToFirstToken(launchCompiled, endpoint, tokenRequest, /certificate-bound token/);
    await stopChild(compiled.child);
    result.tetherDev.push(compiled.token);
    if (compiled.ready !== undefined) result.tetherDevReady.push(compiled.ready);

    const viaTsx = await timeToFirstToken(launchTsx, endpoint, tokenRequest);
    await stopChild(viaTsx.child);
    result.tetherDevTsx.push(viaTsx.token);

    const mockPort = await freePort();
    const mock = await timeToFirstToken(
      () => forkTs(path.join(REPO_ROOT, 'bench', 'servers', 'mock_server.ts'), [String(mockPort), pki.serverCertFile, pki.serverKeyFile], { logFile: path.join(LOG_DIR, 'cold-mock.log') }),
      { origin: `https://127.0.0.1:${mockPort}`, host: `localhost:${mockPort}`, caFile: pki.caFile },
      () => ({ method: 'POST', path: '/token', headers: FORM_HEADERS, body: form({ grant_type: 'client_credentials', scope: 'orders:read' }) }),
    );
    await stopChild(mock.child);
    result.mock.push(mock.token);
    log(`cold start to first token: tether dev ${round(compiled.token)} ms (compiled), ${round(viaTsx.token)} ms (tsx); oauth2-mock-server ${round(mock.token)} ms`);
  }

  for (let i = 0; i < (options.quick ? 1 : 3); i++) {
    const child = forkTs(path.join(REPO_ROOT, 'bench', 'cold_start', 'start_tether_child.ts'), [String(options.quick ? 2 : 4)], { logFile: path.join(LOG_DIR, 'cold-start-tether.log') });
    const { result: times } = await nextMessage<{ type: 'result'; result: StartTetherTimes }>(child, 'result', 120_000);
    await stopChild(child, 2000);
    result.startTether.push(times);
    log(`cold start: startTether() first ${round(times.firstStartToToken)} ms (+ import ${round(times.importHarness)} ms), further ${times.furtherStartToToken.map((t) => round(t)).join(', ')} ms`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------
// Main

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

async function main(): Promise<void> {
  const started = Date.now();
  const report: BenchReport = {
    date: new Date().toISOString(),
    quick: options.quick,
    machine: { ...machine(), loadAverageAtStart: os.loadavg().map((value) => round(value, 2)) },
    settings: { connections: options.connections, durationSeconds: options.durationSeconds, rounds: options.rounds, warmupSeconds: options.warmupSeconds },
    pairs: [],
  };
  log(`machine: ${report.machine.nproc} CPUs, ${report.machine.cpuModel}, Node ${report.machine.node}; load average ${report.machine.loadAverageAtStart.join(' ')}`);
  try {
    if (options.sections.has('load')) {
      const { subjects, ledger } = await loadSection();
      report.load = Object.fromEntries(Object.entries(subjects).map(([name, runs]) => [name, {
        label: LOAD_SUBJECTS.find((subject) => subject.name === name)!.label,
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
      report.pairs.push(...pairRows(subjects));
    }
    if (options.sections.has('verifier')) {
      const { result, rows } = await verifierSection();
      report.verifier = result;
      report.pairs.push(...rows);
    }
    if (options.sections.has('coldstart')) report.coldStart = await coldStartSection();
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  report.machine.loadAverageAtEnd = os.loadavg().map((value) => round(value, 2));
  report.totalSeconds = round((Date.now() - started) / 1000);

  process.stdout.write(`\n${renderTable(report)}\n`);
  // Only a complete run is "the" result; a smoke run or a partial one (one section, some subjects,
  // a profiled server) goes to its own file.
  const complete = !options.quick && !options.subjects && options.sections.size === 3 && !options.profile;
  const file = path.join(RESULTS_DIR, complete ? 'latest.json' : options.quick ? 'quick.json' : 'partial.json');
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${path.relative(REPO_ROOT, file)} (${report.totalSeconds} s in all)`);
  if (complete) {
    writeDocs(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), renderMarkdown(report));
    log('updated the figures in docs/benchmarks.md');
  }
}

main().catch((error: Error) => {
  log(`failed: ${error.stack ?? String(error)}`);
  rmSync(workDir, { recursive: true, force: true });
  process.exit(1);
});

import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { requestOnce, type Endpoint } from '../lib/https_client.js';
import { forkTs, freePort, nextMessage, REPO_ROOT, sleep, spawnNode, TSX } from '../lib/processes.js';

/** The development PKI `tether dev` made: the certificates every server under test shares. */
export interface Pki {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  client(name: string): { certFile: string; keyFile: string; thumbprint: string };
}

export function pkiIn(directory: string): Pki {
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

export interface RunningServer {
  name: string;
  endpoint: Endpoint;
  /** The host:port the issuer names (Host header, DPoP htu). */
  host: string;
  pki: Pki;
  child: ChildProcess;
  /** The PostgreSQL database it keeps its ledger in, if any (its backends' CPU is counted). */
  database?: string;
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

/**
 * `tether dev` itself (src/main.ts through tsx, so any revision runs unbuilt), on PostgreSQL (`database` on the
 * server of `databaseUrl`) or its embedded PGlite; pinned to the server CPU.
 */
export async function startTetherDev(context: BenchContext, name: string, postgres?: { url: string; database: string }, root = REPO_ROOT): Promise<RunningServer> {
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const dataDir = path.join(context.workDir, name);
  const child = spawnNode([...TSX, 'src/main.ts', 'dev'], {
    cwd: root,
    nodeFlags: context.nodeFlagsFor(name),
    env: {
      TETHER_DATA_DIR: dataDir,
      TETHER_HTTPS_PORT: String(httpsPort),
      TETHER_HTTP_PORT: String(httpPort),
      TETHER_ISSUER: `https://localhost:${httpsPort}`,
      TETHER_LOG_LEVEL: 'info',
      DATABASE_URL: postgres?.url ?? '',
    },
    logFile: path.join(context.logDir, `${name}.log`),
    logDirect: true,
  });
  context.pinning.pin(child.pid, 'server');
  const httpOrigin = `http://127.0.0.1:${httpPort}`;
  await waitUntil(async () => (await requestOnce({ origin: httpOrigin, host: `localhost:${httpPort}` }, { path: '/readyz', timeoutMs: 1000 })).status === 200, child, 60_000, name);
  // Threads started while it booted (libuv's pool, PGlite) inherit the pin; pin again for any made before it.
  context.pinning.pin(child.pid, 'server');
  const pki = pkiIn(path.join(dataDir, 'pki'));
  return { name, endpoint: { origin: `https://127.0.0.1:${httpsPort}`, host: `localhost:${httpsPort}`, caFile: pki.caFile }, host: `localhost:${httpsPort}`, pki, child, database: postgres?.database };
}

/**
 * A baseline server module from bench/servers/, started with plain node (its built-in type
 * stripping, no tsx: as its users would start it); it says `ready` over IPC. Pinned to the server CPU.
 */
export async function startBaseline(context: BenchContext, name: string, module: string, args: (port: number) => string[], pki: Pki): Promise<RunningServer> {
  const port = await freePort();
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'servers', module), args(port), {
    loader: 'node',
    nodeFlags: context.nodeFlagsFor(name),
    logFile: path.join(context.logDir, `${name}.log`),
    logDirect: true,
  });
  context.pinning.pin(child.pid, 'server');
  await nextMessage(child, 'ready', 60_000);
  context.pinning.pin(child.pid, 'server');
  return { name, endpoint: { origin: `https://127.0.0.1:${port}`, host: `localhost:${port}`, caFile: pki.caFile }, host: `localhost:${port}`, pki, child };
}

function revisionHas(ref: string, file: string): boolean {
  try {
    execFileSync('git', ['cat-file', '-e', `${ref}:${file}`], { cwd: REPO_ROOT, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The sources of git revision `ref` (src, migrations, bin, package.json, tsconfig), extracted into
 * the work folder with this checkout's node_modules, to run as `tether dev` beside the working tree.
 */
export function checkoutRevision(context: BenchContext, ref: string): string {
  const root = path.join(context.workDir, `revision-${ref.replace(/[^\w.-]/g, '_')}`);
  // Extracted once per run: the load and ledger sections may both ask for the same revision.
  if (existsSync(path.join(root, 'node_modules'))) return root;
  mkdirSync(root, { recursive: true });
  // tsconfig.json maps the verifier package to its sources (packages/resource-server/src), which tsx
  // follows: they come from the same revision (without them the import falls through to a dist/ that a
  // fresh clone has not built).
  const paths = ['src', 'migrations', 'bin', 'package.json', 'tsconfig.json', ...(revisionHas(ref, 'packages/resource-server/src') ? ['packages/resource-server/src'] : [])];
  const archive = execFileSync('git', ['archive', '--format=tar', ref, ...paths], { cwd: REPO_ROOT, maxBuffer: 256 * 2 ** 20 });
  execFileSync('tar', ['-x', '-C', root], { input: archive });
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  return root;
}

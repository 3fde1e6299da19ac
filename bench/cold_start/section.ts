import { spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { form, FORM_HEADERS, requestOnce, type Endpoint, type OneRequest } from '../lib/https_client.js';
import { forkTs, freePort, nextMessage, REPO_ROOT, sleep, spawnNode, stopChild, TSX } from '../lib/processes.js';
import type { ColdStartResult } from '../lib/report.js';
import { round } from '../lib/stats.js';
import { pkiIn } from '../load/servers.js';
import { clientCredentialsBody } from '../load/subjects.js';
import type { StartTetherTimes } from './start_tether_child.js';

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
function buildCompiledCli(workDir: string): string {
  const buildDir = path.join(workDir, 'build');
  mkdirSync(buildDir, { recursive: true });
  // The compiled CLI imports the verifier package through node_modules, i.e. its dist/, which `npm
  // run build` makes first. It is built here every time: a fresh clone has none, and one left by an
  // earlier build may lack what the working tree's CLI imports (it did: 2026-12-04).
  const packageDir = path.join(REPO_ROOT, 'packages', 'resource-server');
  const built = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(packageDir, 'tsconfig.build.json')], { cwd: packageDir, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`could not build tether-oauth-resource-server: ${built.stdout}${built.stderr}`);
  const tsc = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', path.join(buildDir, 'dist')], { cwd: REPO_ROOT, encoding: 'utf8' });
  const main = path.join(buildDir, 'dist', 'src', 'main.js');
  if (!existsSync(main)) throw new Error(`could not compile the CLI: ${tsc.stdout}${tsc.stderr}`);
  // The console's static files, as `npm run build` copies them (package.json "build").
  cpSync(path.join(REPO_ROOT, 'src', 'admin', 'console'), path.join(buildDir, 'dist', 'src', 'admin', 'console'), { recursive: true });
  // What an installed package has next to dist/: its package.json ("type": "module"), migrations, dependencies.
  copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(buildDir, 'package.json'));
  symlinkSync(path.join(REPO_ROOT, 'migrations'), path.join(buildDir, 'migrations'));
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(buildDir, 'node_modules'));
  return main;
}

/**
 * Pair 5: process start → first token, for `tether dev` (compiled and through tsx), the baselines
 * (bare oidc-provider and oauth2-mock-server, plain node) and `startTether()`; interleaved per round.
 */
export async function coldStartSection(context: BenchContext): Promise<ColdStartResult> {
  const { options, log, logDir } = context;
  const dataDir = path.join(context.workDir, 'cold-dev');
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    TETHER_DATA_DIR: dataDir, TETHER_HTTPS_PORT: String(httpsPort), TETHER_HTTP_PORT: String(httpPort),
    TETHER_ISSUER: `https://localhost:${httpsPort}`, DATABASE_URL: '',
  };
  const compiledMain = buildCompiledCli(context.workDir);
  const launchTsx = () => spawnNode([...TSX, 'src/main.ts', 'dev'], { env, logFile: path.join(logDir, 'cold-dev.log') });
  const launchCompiled = () => spawnNode([compiledMain, 'dev'], { env, logFile: path.join(logDir, 'cold-dev.log') });
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

  const result: ColdStartResult = { tetherDevFirstEver: firstEver.token, tetherDev: [], tetherDevReady: [], tetherDevTsx: [], mock: [], bare: [], startTether: [] };
  for (let i = 0; i < options.coldStarts; i++) {
    const compiled = await timeToFirstToken(launchCompiled, endpoint, tokenRequest, /certificate-bound token/);
    await stopChild(compiled.child);
    result.tetherDev.push(compiled.token);
    if (compiled.ready !== undefined) result.tetherDevReady.push(compiled.ready);

    const viaTsx = await timeToFirstToken(launchTsx, endpoint, tokenRequest);
    await stopChild(viaTsx.child);
    result.tetherDevTsx.push(viaTsx.token);

    const barePort = await freePort();
    const bare = await timeToFirstToken(
      () => forkTs(path.join(REPO_ROOT, 'bench', 'servers', 'bare_oidc_provider.ts'), [String(barePort), pki.serverCertFile, pki.serverKeyFile, pki.caFile], { loader: 'node', logFile: path.join(logDir, 'cold-bare.log') }),
      { origin: `https://127.0.0.1:${barePort}`, host: `localhost:${barePort}`, caFile: pki.caFile },
      tokenRequest,
    );
    await stopChild(bare.child);
    result.bare.push(bare.token);

    const mockPort = await freePort();
    const mock = await timeToFirstToken(
      () => forkTs(path.join(REPO_ROOT, 'bench', 'servers', 'mock_server.ts'), [String(mockPort), pki.serverCertFile, pki.serverKeyFile], { loader: 'node', logFile: path.join(logDir, 'cold-mock.log') }),
      { origin: `https://127.0.0.1:${mockPort}`, host: `localhost:${mockPort}`, caFile: pki.caFile },
      () => ({ method: 'POST', path: '/token', headers: FORM_HEADERS, body: form({ grant_type: 'client_credentials', scope: 'orders:read' }) }),
    );
    await stopChild(mock.child);
    result.mock.push(mock.token);
    log(`cold start to first token: tether dev ${round(compiled.token)} ms (compiled), ${round(viaTsx.token)} ms (tsx); bare oidc-provider ${round(bare.token)} ms; oauth2-mock-server ${round(mock.token)} ms`);
  }

  for (let i = 0; i < (options.quick ? 1 : 3); i++) {
    const child = forkTs(path.join(REPO_ROOT, 'bench', 'cold_start', 'start_tether_child.ts'), [String(options.quick ? 2 : 4)], { logFile: path.join(logDir, 'cold-start-tether.log') });
    const { result: times } = await nextMessage<{ type: 'result'; result: StartTetherTimes }>(child, 'result', 120_000);
    await stopChild(child, 2000);
    result.startTether.push(times);
    log(`cold start: startTether() first ${round(times.firstStartToToken)} ms (+ import ${round(times.importHarness)} ms), further ${times.furtherStartToToken.map((t) => round(t)).join(', ')} ms; close() ${times.close.map((t) => round(t)).join(', ')} ms`);
  }
  return result;
}

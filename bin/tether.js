#!/usr/bin/env node
// The `tether` command: runs the compiled CLI (dist/src/main.js).
//
// - On a Node.js older than 22 (oidc-provider 9 needs 22+), it runs itself again through
//   bin/run-node.sh, which provisions Node 24 from the npm registry package `node` once.
// - In a checkout (src/ next to it), the compiled output is used when it is current; otherwise the
//   sources are compiled incrementally first (tsc, only what changed), so `npm run dev` and `npx
//   tether` start as fast as the compiled start and always run what the sources say.
// - Installed from the registry or in the container image, dist/ is what ships and is run as it is.
//
// This file must parse on old Node versions too: plain ES2020, no dependencies.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const MINIMUM_NODE_MAJOR = 22;
const root = fileURLToPath(new URL('..', import.meta.url));
const self = fileURLToPath(import.meta.url);
const main = new URL('../dist/src/main.js', import.meta.url);
/**
 * What a checkout compiles, in order: the workspace package the server imports (its types and its
 * dist/ are what the server is compiled and run against), then the server. Build info of the
 * package lives under node_modules/.cache: its dist/ is what it publishes.
 */
const BUILDS = [
  {
    name: 'tether-oauth-resource-server',
    sources: `${root}packages/resource-server/src`,
    tsconfig: `${root}packages/resource-server/tsconfig.build.json`,
    output: `${root}packages/resource-server/dist/index.js`,
    buildInfo: `${root}node_modules/.cache/tether/resource-server.tsbuildinfo`,
  },
  {
    name: 'tether-oauth', sources: `${root}src`, tsconfig: `${root}tsconfig.build.json`, output: fileURLToPath(main), buildInfo: `${root}dist/.tsbuildinfo`,
    // Read at run time next to the compiled code, copied as `npm run build` copies them.
    assets: ['src/admin/console'],
  },
];

function fail(message) {
  process.stderr.write(`tether: ${message}\n`);
  process.exit(2);
}

function onSupportedNode() {
  if (Number(process.versions.node.split('.')[0]) >= MINIMUM_NODE_MAJOR) return;
  const runNode = `${root}bin/run-node.sh`;
  if (!existsSync(runNode) || process.env.TETHER_NODE_REEXEC) {
    fail(`Node.js ${process.versions.node} is too old: tether needs Node.js ${MINIMUM_NODE_MAJOR} or newer`);
  }
  const run = spawnSync('sh', [runNode, self, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, TETHER_NODE_REEXEC: '1' } });
  process.exit(run.status ?? 1);
}

/** The newest modification time of the TypeScript below `directory`, of every file below `assets`, and of `files`, in ms. */
function newestSource(directory, files, assets = []) {
  let newest = 0;
  const visit = (folder, every) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const file = `${folder}/${entry.name}`;
      if (entry.isDirectory()) visit(file, every);
      else if (every || entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(file).mtimeMs);
    }
  };
  visit(directory, false);
  for (const asset of assets) if (existsSync(`${root}${asset}`)) visit(`${root}${asset}`, true);
  for (const file of files) if (existsSync(file)) newest = Math.max(newest, statSync(file).mtimeMs);
  return newest;
}

function isCheckout() {
  return existsSync(`${root}src/main.ts`) && existsSync(`${root}tsconfig.build.json`);
}

const newestInputOf = (build) => newestSource(build.sources, [build.tsconfig, `${root}tsconfig.json`, `${root}package.json`], build.assets);

function isCurrent(build) {
  const assetsCopied = (build.assets ?? []).every((asset) => !existsSync(`${root}${asset}`) || existsSync(`${root}dist/${asset}`));
  return assetsCopied && existsSync(build.output) && existsSync(build.buildInfo) && statSync(build.buildInfo).mtimeMs >= newestInputOf(build);
}

/** Compiles what changed since the last build (tsc --incremental keeps its build info). */
function buildIncrementally(build) {
  const tsc = `${root}node_modules/typescript/bin/tsc`;
  if (!existsSync(tsc)) fail(`${build.name}: the compiled output is missing or older than its sources, and TypeScript is not installed to compile it: run \`npm ci\`, then \`npm run build\``);
  process.stderr.write(`tether: compiling what changed in ${build.name} (tsc --incremental) ...\n`);
  mkdirSync(dirname(build.buildInfo), { recursive: true });
  // Sources changed while tsc runs are newer than this, and compiled on the next start.
  const compiledUpTo = newestInputOf(build);
  const run = spawnSync(process.execPath, [tsc, '-p', build.tsconfig, '--incremental', '--tsBuildInfoFile', build.buildInfo], { stdio: ['ignore', 2, 2] });
  for (const asset of build.assets ?? []) {
    if (existsSync(`${root}${asset}`)) cpSync(`${root}${asset}`, `${root}dist/${asset}`, { recursive: true });
  }
  // tsc emits despite type errors (it printed them): run what it emitted, as `tsx` would have.
  if (!existsSync(build.output)) fail(`${build.name}: the build produced no ${build.output} (see the errors above)`);
  if (run.status !== 0) process.stderr.write('tether: type errors above; running the compiled output anyway\n');
  // tsc leaves its build info alone when no file's content changed (a touched file): mark it current.
  if (existsSync(build.buildInfo)) {
    const current = new Date(Math.max(Date.now(), compiledUpTo));
    utimesSync(build.buildInfo, current, current);
  }
}

onSupportedNode();
if (isCheckout()) {
  // A rebuilt package may change the types the server is compiled against: the server is checked again then.
  let rebuilt = false;
  for (const build of BUILDS) {
    if (!existsSync(build.sources) || (!rebuilt && isCurrent(build))) continue;
    buildIncrementally(build);
    rebuilt = true;
  }
}
try {
  await import(main.href);
} catch (error) {
  // Only main.js itself missing; a missing module further down is a real error and is rethrown.
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || error.url !== main.href) throw error;
  fail('the compiled CLI (dist/) is missing: run `npm run build` first');
}

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
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MINIMUM_NODE_MAJOR = 22;
const root = fileURLToPath(new URL('..', import.meta.url));
const self = fileURLToPath(import.meta.url);
const main = new URL('../dist/src/main.js', import.meta.url);
const buildInfo = `${root}dist/.tsbuildinfo`;

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

/** The newest modification time of the sources the build reads, in ms. */
function newestSource() {
  let newest = 0;
  const visit = (directory) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const file = `${directory}/${entry.name}`;
      if (entry.isDirectory()) visit(file);
      else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(file).mtimeMs);
    }
  };
  visit(`${root}src`);
  for (const file of ['tsconfig.json', 'tsconfig.build.json', 'package.json']) newest = Math.max(newest, statSync(`${root}${file}`).mtimeMs);
  return newest;
}

function isCheckout() {
  return existsSync(`${root}src/main.ts`) && existsSync(`${root}tsconfig.build.json`);
}

function compiledIsCurrent() {
  return existsSync(fileURLToPath(main)) && existsSync(buildInfo) && statSync(buildInfo).mtimeMs >= newestSource();
}

/** Compiles what changed since the last build (tsc --incremental keeps dist/.tsbuildinfo). */
function buildIncrementally() {
  const tsc = `${root}node_modules/typescript/bin/tsc`;
  if (!existsSync(tsc)) fail('dist/ is missing or older than src/, and TypeScript is not installed to compile it: run `npm ci`, then `npm run build`');
  process.stderr.write('tether: compiling the sources that changed (tsc --incremental) ...\n');
  const run = spawnSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`, '--incremental', '--tsBuildInfoFile', buildInfo], { stdio: ['ignore', 2, 2] });
  // tsc emits despite type errors (it printed them): run what it emitted, as `tsx` would have.
  if (!existsSync(fileURLToPath(main))) fail('the build produced no dist/src/main.js (see the errors above)');
  if (run.status !== 0) process.stderr.write('tether: type errors above; running the compiled output anyway\n');
  // tsc leaves its build info alone when no file's content changed (a touched file): mark it current.
  if (existsSync(buildInfo)) {
    const now = new Date();
    utimesSync(buildInfo, now, now);
  }
}

onSupportedNode();
if (isCheckout() && !compiledIsCurrent()) buildIncrementally();
try {
  await import(main.href);
} catch (error) {
  // Only main.js itself missing; a missing module further down is a real error and is rethrown.
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || error.url !== main.href) throw error;
  fail('the compiled CLI (dist/) is missing: run `npm run build` first');
}

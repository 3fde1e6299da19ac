import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';

/**
 * The ports tests hand to the processes they start: never the same one twice in a run, even to two
 * processes asking at the same moment, and never one the kernel could pick for `listen(0)` (CI once
 * failed the README walk on exactly that collision). With 300 ports drawn at random from some 22,000
 * and no claims, two would match in six runs of seven; with `listen(0)`, every one is ephemeral.
 */

const run = promisify(execFile);
const PORTS_MODULE = fileURLToPath(new URL('./ports.ts', import.meta.url));
const EACH = 100;

let claims: string;
let saved: string | undefined;

beforeAll(async () => {
  saved = process.env.TETHER_TEST_PORT_CLAIMS;
  claims = await mkdtemp(path.join(os.tmpdir(), 'tether-ports-test-'));
  process.env.TETHER_TEST_PORT_CLAIMS = claims;
});

afterAll(async () => {
  if (saved === undefined) delete process.env.TETHER_TEST_PORT_CLAIMS;
  else process.env.TETHER_TEST_PORT_CLAIMS = saved;
  await rm(claims, { recursive: true, force: true });
});

/** Another process of the same run (like the other Jest worker), asking for `count` ports. */
async function portsFromAnotherProcess(count: number): Promise<number[]> {
  const script = `const { freePort } = await import(${JSON.stringify(PORTS_MODULE)});`
    + `const ports = []; for (let i = 0; i < ${count}; i += 1) ports.push(await freePort());`
    + 'process.stdout.write(JSON.stringify(ports));';
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, TETHER_TEST_PORT_CLAIMS: claims }, timeout: 60_000,
  });
  return JSON.parse(stdout) as number[];
}

test('two processes of one run asking at once never get the same port, and none lies in the ephemeral range', async () => {
  const here = Promise.all(Array.from({ length: EACH }, () => freePort()));
  const [mine, theirs, alsoTheirs] = await Promise.all([here, portsFromAnotherProcess(EACH), portsFromAnotherProcess(EACH)]);
  const all = [...mine, ...theirs, ...alsoTheirs];
  expect(all).toHaveLength(3 * EACH);
  expect(new Set(all).size).toBe(3 * EACH);
  const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  expect(all.filter((port) => port >= first! && port <= last!)).toEqual([]);
});

import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  fencedBlocks, freePort, matchesShown, ROOT, runBlocksInOneShell, runInBackground, sandboxCheckout, stopBackground, waitFor, type Background, type DocBlock,
} from './support/doc_blocks.js';

/**
 * The README as a newcomer follows it, in one terminal session: every command block in order,
 * `npm run dev` still running when the next section starts. Each command works as shown, or says
 * exactly what to do — and doing that works. Every block of the README is accounted for below: a new
 * one fails this test until it is walked too (or its reason to be skipped is written down).
 */

/** How the walk treats a block: its section, its first line, and what is done with it. */
interface Step {
  heading: string;
  firstLine: RegExp;
  walk: ((block: DocBlock) => Promise<void>) | { skipped: string };
}

let sandbox: string;
const running: Background[] = [];
let dev: Background;
/** The README's ports, and the free ones this walk uses instead. */
const ports = { tether: 0, http: 0, exampleTether: 0, ordersApi: 0 };
const onOurPorts = (text: string) => text
  .replaceAll('localhost:8443', `localhost:${ports.tether}`)
  .replaceAll('localhost:9443', `localhost:${ports.ordersApi}`)
  .replaceAll('--port 9443', `--port ${ports.ordersApi}`);

async function shell(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = await runBlocksInOneShell([command], sandbox, { DATABASE_URL: undefined, TETHER_ISSUER: undefined }, 240_000);
  return { code: run.code, stdout: run.outputs[0] ?? '', stderr: run.stderr };
}

const STEPS: Step[] = [
  {
    heading: 'Two commands',
    firstLine: /^npm ci && npm run dev\b/,
    walk: async (block) => {
      // `npm ci` has run (this test runs in the installed checkout); `npm test` is this suite itself.
      expect(block.text.split('\n').map((line) => line.replace(/\s+#.*$/, ''))).toEqual(['npm ci && npm run dev', 'npm test']);
      dev = runInBackground('exec npm run dev', sandbox, {
        DATABASE_URL: undefined, TETHER_ISSUER: undefined, TETHER_HTTPS_PORT: String(ports.tether), TETHER_HTTP_PORT: String(ports.http),
      });
      running.push(dev);
      await waitFor(() => dev.output().includes('docs/development.md') || dev.child.exitCode !== null, 'the dev banner', dev.output, 240_000);
      expect(dev.output()).toContain(`Tether (development) — issuer https://localhost:${ports.tether}\n`);
    },
  },
  {
    heading: 'Your first token',
    firstLine: /^curl --cacert \.tether\/pki\/ca\.pem/,
    walk: async (block) => {
      const run = await shell(onOurPorts(block.text));
      expect(run.code).toBe(0);
      const shown = JSON.parse(block.output!.text) as unknown;
      if (!matchesShown(JSON.parse(run.stdout), shown)) throw new Error(`the first token's answer ${run.stdout} is not as shown: ${block.output!.text}`);
    },
  },
  {
    heading: 'Does your API check its tokens? (`tether probe`)',
    firstLine: /^bin\/run-node\.sh --import tsx examples\/orders_api\/main\.ts --port 9443 &/,
    walk: async (block) => {
      const [api, ...probe] = block.text.split('\n');
      const ordersApi = runInBackground(`exec ${onOurPorts(api!.replace(/\s*&\s+#.*$/, ''))}`, sandbox, { DATABASE_URL: undefined });
      running.push(ordersApi);
      await waitFor(() => ordersApi.output().includes('orders API on') || ordersApi.child.exitCode !== null, 'the orders API', ordersApi.output, 120_000);
      // While `tether dev` still runs: the example's Tether has its own port.
      const run = await shell(onOurPorts(probe.join('\n')));
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      const shown = block.output!.text.trim();
      expect(run.stdout.replaceAll(`localhost:${ports.ordersApi}`, 'localhost:9443')).toBe(shown);
    },
  },
  {
    heading: 'Find and revoke every live token of one client',
    firstLine: /^\$ npx tether tokens list --client orders-worker --state active$/,
    walk: async (block) => {
      const commands = block.text.split('\n').filter((line) => line.startsWith('$ ')).map((line) => line.slice(2));
      expect(commands).toEqual([
        'npx tether tokens list --client orders-worker --state active',
        'npx tether tokens revoke --client orders-worker --reason "laptop stolen"',
        'npx tether clients suspend orders-worker --reason offboarded',
      ]);
      // tether dev still runs: the commands go through its admin API (its local credential).
      const listed = await shell(commands[0]!);
      expect({ code: listed.code, stderr: listed.stderr }).toEqual({ code: 0, stderr: '' });
      expect(listed.stdout).toMatch(/^TOKEN ID\s+CLIENT\s+RESOURCE\s+SCOPE\s+BINDING\s+STATE\s+ISSUED\s+EXPIRES\s+LAST USED\s+PARENT\n\S+\s+orders-worker\s+https:\/\/orders\.example\.test\s+orders:read\s+mtls x5t#S256=\S+\s+active\s/);
      const revoked = await shell(commands[1]!);
      expect({ code: revoked.code, stderr: revoked.stderr }).toEqual({ code: 0, stderr: '' });
      expect(revoked.stdout).toMatch(/^revoked 1 token \(every live token of client orders-worker, with tokens exchanged from them\)\nTOKEN ID\s+CLIENT\s+RESOURCE\s+VIA\n\S+\s+orders-worker\s+https:\/\/orders\.example\.test\s+selected$/);
      const suspended = await shell(commands[2]!);
      expect({ code: suspended.code, stdout: suspended.stdout, stderr: suspended.stderr }).toEqual({
        code: 0, stdout: 'suspended orders-worker: it gets no new tokens\nrevoked 0 live tokens (with tokens exchanged from them)', stderr: '',
      });
    },
  },
  { heading: 'Your first token', firstLine: /^header {2}\{/, walk: { skipped: 'the decoded token: an illustration, checked by the first token\'s own test (server_commands.test.ts)' } },
  { heading: 'Does your API check its tokens? (`tether probe`)', firstLine: /^GET https:\/\/localhost:9443\/orders$/, walk: { skipped: 'the weakened API\'s report: examples/orders_api/orders_api.test.ts probes the weakened copies' } },
  { heading: 'Verifying Tether tokens in your API', firstLine: /^npm install tether-oauth-resource-server$/, walk: { skipped: 'an install into an API\'s project: test/resource_server/package.test.ts installs the packed package with only jose' } },
  { heading: 'Verifying Tether tokens in your API', firstLine: /^import \{ koaVerifier \}/, walk: { skipped: 'code for an API, not a command: examples/orders_api runs it (its own test)' } },
  { heading: 'Run it in a container', firstLine: /^npm ci\s/, walk: { skipped: 'needs Docker: test/deploy/dockerfile_replay.test.ts replays the Dockerfile and these steps without it' } },
  { heading: 'Run it in a container', firstLine: /^curl --cacert deploy\/tls\/ca\.pem/, walk: { skipped: 'the container\'s token: test/deploy/dockerfile_replay.test.ts gets it' } },
  { heading: 'Developing Tether', firstLine: /^npm test\s/, walk: { skipped: 'the test suite, lint, typecheck, bench and CI themselves' } },
];

beforeAll(async () => {
  for (const name of Object.keys(ports) as (keyof typeof ports)[]) ports[name] = await freePort();
  sandbox = await sandboxCheckout({ examplePorts: { 8444: ports.exampleTether } });
});

afterAll(async () => {
  for (const background of running.reverse()) await stopBackground(background);
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

test('the README\'s commands, in order, with tether dev running, work or say exactly what to do', async () => {
  const blocks = fencedBlocks(await readFile(path.join(ROOT, 'README.md'), 'utf8'))
    .filter((block, index, all) => !all.some((other) => other.output === block));
  const unplanned = blocks.filter((block) => !STEPS.some((step) => step.heading === block.heading && step.firstLine.test(block.text.split('\n')[0]!)));
  expect(unplanned.map((block) => `${block.heading}: ${block.text.split('\n')[0]}`)).toEqual([]);
  for (const block of blocks) {
    const step = STEPS.find((candidate) => candidate.heading === block.heading && candidate.firstLine.test(block.text.split('\n')[0]!))!;
    if ('skipped' in step.walk) continue;
    await step.walk(block);
  }
  expect(STEPS.filter((step) => !('skipped' in step.walk))).toHaveLength(4);
}, 600_000);

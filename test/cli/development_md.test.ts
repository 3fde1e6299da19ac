import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { DEV_CONFIG } from '../../src/config/dev_defaults.js';
import {
  fencedBlocks, freePort, matchesShown, ROOT, runBlocksInOneShell, runInBackground, sandboxCheckout, stopBackground, waitFor, type Background,
} from './support/doc_blocks.js';

// docs/development.md as a newcomer follows it: `tether dev` running, every command block of the page
// in order in one shell, each answer as the page shows it. And the banner that points there.

let sandbox: string;
let dev: Background;
let port: number;
let httpPort: number;

beforeAll(async () => {
  sandbox = await sandboxCheckout();
  port = await freePort();
  httpPort = await freePort();
  // What `npm run dev` runs, on ports of this test's own.
  dev = runInBackground(`exec node --import ${ROOT}/node_modules/tsx/dist/loader.mjs src/main.ts dev`, sandbox, {
    DATABASE_URL: undefined, TETHER_ISSUER: undefined, TETHER_HTTPS_PORT: String(port), TETHER_HTTP_PORT: String(httpPort),
  });
  await waitFor(() => dev.output().includes('docs/development.md') || dev.child.exitCode !== null, 'the dev banner', dev.output);
}, 180_000);

afterAll(async () => {
  if (dev) await stopBackground(dev);
  if (sandbox) await rm(sandbox, { recursive: true, force: true });
});

describe('the tether dev banner', () => {
  test('names what actually listens, and the issuer derived from the HTTPS port', () => {
    const banner = dev.output();
    expect(banner).toContain(`Tether (development) — issuer https://localhost:${port}\n`);
    expect(banner).toContain(`  https      https://localhost:${port}  (asks for client certificates)\n`);
    expect(banner).toContain(`  http       http://localhost:${httpPort}\n`);
    expect(banner).toContain(`  discovery  https://localhost:${port}/.well-known/oauth-authorization-server\n`);
    expect(banner).not.toContain('8443');
  });

  test('lists every development client with how it authenticates, secrets included', () => {
    const banner = dev.output();
    for (const client of DEV_CONFIG.clients) {
      const auth = client.auth.method === 'tls_client_auth'
        ? `tls_client_auth: --cert .tether/pki/clients/${client.id}.pem --key .tether/pki/clients/${client.id}.key.pem`
        : `${client.auth.method}: -u ${client.id}:${(client.auth as { secret: string }).secret}`;
      expect(banner).toMatch(new RegExp(`^  ${client.id} +${auth.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; `, 'm'));
    }
    expect(banner).toContain('reporting-cli  client_secret_basic: -u reporting-cli:dev-only-secret-reporting-cli-0001; DPoP-bound tokens');
    expect(banner).toMatch(/^ +https:\/\/payments\.example\.test \[payments:read\]; by exchange https:\/\/orders\.example\.test \[orders:read\] for orders-worker; introspects https:\/\/payments\.example\.test; reports use \(https:\/\/use-reports\.example\.test\)$/m);
  });
});

describe('docs/development.md', () => {
  test('every command block works as shown, in order, while tether dev runs', async () => {
    const blocks = fencedBlocks(await readFile(path.join(ROOT, 'docs', 'development.md'), 'utf8')).filter((block) => block.language === 'sh');
    expect(blocks.length).toBeGreaterThanOrEqual(6);
    const onOurPort = (text: string) => text.replaceAll('localhost:8443', `localhost:${port}`);
    const run = await runBlocksInOneShell(blocks.map((block) => onOurPort(block.text)), sandbox);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.outputs).toHaveLength(blocks.length);

    blocks.forEach((block, index) => {
      if (!block.output) {
        expect(run.outputs[index]).toBe('');
        return;
      }
      const shown = JSON.parse(block.output.text) as unknown;
      const answered = JSON.parse(run.outputs[index]!) as unknown;
      if (!matchesShown(answered, shown)) throw new Error(`block ${index + 1} (${block.heading}) answered ${run.outputs[index]}, the page shows ${block.output.text}`);
    });
  }, 180_000);

  test('the exchanged token is for the orders API, for orders-worker, by payments-api, bound to its certificate', async () => {
    const blocks = fencedBlocks(await readFile(path.join(ROOT, 'docs', 'development.md'), 'utf8')).filter((block) => block.language === 'sh');
    const [first, second] = blocks.map((block) => block.text.replaceAll('localhost:8443', `localhost:${port}`));
    const run = await runBlocksInOneShell([first!, second!, 'printf "%s\\n%s" "$TOKEN" "$ORDERS_TOKEN"'], sandbox);
    const [subject, exchanged] = run.outputs[2]!.split('\n').map((token) => decodeJwt(token));
    expect(subject).toMatchObject({ aud: 'https://payments.example.test', scope: 'payments:charge orders:read', client_id: 'orders-worker' });
    expect(exchanged).toMatchObject({ aud: 'https://orders.example.test', scope: 'orders:read', sub: 'orders-worker', client_id: 'payments-api', act: { sub: 'payments-api' } });
    expect(exchanged!.exp!).toBeLessThanOrEqual(subject!.exp!);
    expect((exchanged!.cnf as Record<string, string>)['x5t#S256']).not.toBe((subject!.cnf as Record<string, string>)['x5t#S256']);
  }, 120_000);
});

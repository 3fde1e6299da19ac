import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import { freePort } from '../support/nginx.js';
import { postForm } from '../support/tether.js';
import { runTetherProcess, waitFor, type TetherProcess } from '../support/tether_process.js';

// `tether report` next to a running `tether dev` (issue 19 part 2): the embedded database has one
// owner, so the CLI asks that server's admin API (GET /admin/api/report, recorded as admin.called);
// with no server running it reads the database itself and prints the same report. Real processes.

let workdir: string;
let dev: TetherProcess | undefined;

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-dev-report-'));
});

afterEach(async () => {
  await dev?.stop();
  dev = undefined;
  await rm(workdir, { recursive: true, force: true });
});

async function agentOf(pki: string, client: string): Promise<Agent> {
  return new Agent({
    connect: {
      ca: await readFile(path.join(pki, 'ca.pem'), 'utf8'),
      cert: await readFile(path.join(pki, 'clients', `${client}.pem`), 'utf8'),
      key: await readFile(path.join(pki, 'clients', `${client}.key.pem`), 'utf8'),
    },
  });
}

test('tether report goes through the running dev\'s admin API, and reads the database once it stops', async () => {
  const port = await freePort();
  const httpPort = await freePort();
  const env = { TETHER_LOG_LEVEL: 'warn', DATABASE_URL: undefined, TETHER_ISSUER: `https://localhost:${port}`, TETHER_HTTPS_PORT: String(port), TETHER_HTTP_PORT: String(httpPort) };
  dev = runTetherProcess(['dev'], env, workdir);
  await waitFor(() => dev!.stdout().includes('curl'), 'the dev banner');

  // One token for the orders worker; the orders API introspects it (introspection sets its last use).
  const pki = path.join(workdir, '.tether', 'pki');
  const worker = await agentOf(pki, 'orders-worker');
  const issued = await postForm(`https://localhost:${port}/token`, {
    grant_type: 'client_credentials', client_id: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read',
  }, { dispatcher: worker });
  await worker.close();
  expect(issued.status).toBe(200);
  const token = issued.body.access_token as string;
  const ordersApi = await agentOf(pki, 'orders-api');
  const introspected = await postForm(`https://localhost:${port}/token/introspection`, { client_id: 'orders-api', token }, { dispatcher: ordersApi });
  await ordersApi.close();
  expect(introspected).toMatchObject({ status: 200, body: { active: true, jti: decodeJwt(token).jti } });

  const cli = async (...args: string[]) => {
    const run = runTetherProcess(args, { TETHER_LOG_LEVEL: 'warn', DATABASE_URL: undefined }, workdir);
    return { code: await run.exited, out: run.stdout(), err: run.stderr() };
  };

  const remote = await cli('report', '--json');
  expect(remote).toMatchObject({ code: 0, err: '' });
  const report = JSON.parse(remote.out) as { clients: Record<string, unknown>[]; idle_clients: string[]; grants: Record<string, unknown>[] };
  expect(report.clients.find((client) => client.client_id === 'orders-worker')).toEqual({
    client_id: 'orders-worker', configured: true, has_grants: true, serves_api: false, suspended: false, live_tokens: 1, issued_in_window: 1, uses: 0,
    last_issued_at: expect.any(String), last_used_at: expect.any(String), idle: false,
  });
  // The APIs' own clients (orders-api, reports-api, payments-api: grants for the use-report endpoint)
  // are idle too, but not candidates: suspending them would break their APIs.
  expect(report.idle_clients).toEqual(['reporting-cli']);
  expect(report.clients.filter((client) => client.idle).map((client) => [client.client_id, client.serves_api]))
    .toEqual([['payments-api', true], ['orders-api', true], ['reports-api', true], ['reporting-cli', false]]);
  expect(report.grants.find((grant) => grant.client_id === 'orders-worker' && grant.resource === 'https://orders.example.test'))
    .toMatchObject({ live_tokens: 1, use_reported: false, unused_scopes: null, suggestion: null });

  const text = await cli('report', '--client', 'orders-worker');
  expect(text.code).toBe(0);
  expect(text.out).toMatch(/^orders-worker +1 +1 +0 .+ active$/m);

  // Nothing matched on the server (404): one line, exit code 1. A bad flag never reaches the server.
  expect(await cli('report', '--client', 'nobody')).toEqual({
    code: 1, out: '', err: 'tether: no client "nobody" in the configuration or in the window\'s records: nothing to report (tether clients list shows them)\n',
  });
  expect(await cli('report', '--window', '12h')).toMatchObject({ code: 2, out: '' });

  const tail = await cli('ledger', 'tail', '-n', '20', '--json');
  const events = tail.out.trim().split('\n').map((line) => JSON.parse(line) as { type: string; details: Record<string, unknown> | null });
  expect(events.filter((event) => event.type === 'admin.called').map((event) => [event.details!.operation, event.details!.status, event.details!.input]))
    .toEqual([
      ['report', 200, { window: '30d', format: 'json' }],
      ['report', 200, { window: '30d', client: 'orders-worker', format: 'text' }],
      ['report', 404, { window: '30d', client: 'nobody', format: 'text' }],
    ]);

  expect(await dev.stop()).toBe(0);
  dev = undefined;
  // No server: the same report from the database.
  const local = await cli('report', '--json');
  expect(local.code).toBe(0);
  expect(JSON.parse(local.out)).toMatchObject({ idle_clients: ['reporting-cli'] });
  expect((JSON.parse(local.out) as typeof report).clients.find((client) => client.client_id === 'orders-worker')).toMatchObject({ live_tokens: 1, issued_in_window: 1 });
}, 180_000);

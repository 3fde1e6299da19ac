import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import { freePort } from '../support/nginx.js';
import { postForm } from '../support/tether.js';
import { runTetherProcess, waitFor, type TetherProcess } from '../support/tether_process.js';

// The inventory commands next to a running `tether dev` (issue 20): the embedded database has one
// owner, so the CLI asks that server's admin API, with the local credential; with no server running
// it reads the database itself. Real processes, real ports.

let workdir: string;
let dev: TetherProcess | undefined;

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-dev-admin-'));
});

afterEach(async () => {
  if (dev && dev.child.exitCode === null) {
    dev.child.kill('SIGTERM');
    await dev.exited;
  }
  dev = undefined;
  await rm(workdir, { recursive: true, force: true });
});

test('tokens, clients and ledger commands work while tether dev runs (through its admin API), and on the database once it stops', async () => {
  const port = await freePort();
  const httpPort = await freePort();
  const env = { TETHER_LOG_LEVEL: 'warn', DATABASE_URL: undefined, TETHER_ISSUER: `https://localhost:${port}`, TETHER_HTTPS_PORT: String(port), TETHER_HTTP_PORT: String(httpPort) };
  dev = runTetherProcess(['dev'], env, workdir);
  await waitFor(() => dev!.stdout().includes('curl'), 'the dev banner');
  expect(dev.stdout()).toContain(`  admin      http://localhost:${httpPort}/admin/api  credential in .tether/admin-credential.json (mode 0600;`);
  const credentialFile = path.join(workdir, '.tether', 'admin-credential.json');
  expect((await stat(credentialFile)).mode & 0o777).toBe(0o600);
  const credential = JSON.parse(await readFile(credentialFile, 'utf8')) as { secret: string; url: string; pid: number };
  expect(credential).toEqual({ secret: expect.stringMatching(/^[\w-]{43}$/), url: `http://localhost:${httpPort}/admin`, pid: dev.child.pid });

  const pki = path.join(workdir, '.tether', 'pki');
  const agent = new Agent({
    connect: {
      ca: await readFile(path.join(pki, 'ca.pem'), 'utf8'),
      cert: await readFile(path.join(pki, 'clients', 'orders-worker.pem'), 'utf8'),
      key: await readFile(path.join(pki, 'clients', 'orders-worker.key.pem'), 'utf8'),
    },
  });
  const issued = await postForm(`https://localhost:${port}/token`, {
    grant_type: 'client_credentials', client_id: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read',
  }, { dispatcher: agent });
  await agent.close();
  expect(issued.status).toBe(200);
  const jti = decodeJwt(issued.body.access_token as string).jti!;

  const cli = async (...args: string[]) => {
    const run = runTetherProcess(args, { TETHER_LOG_LEVEL: 'warn', DATABASE_URL: undefined }, workdir);
    return { code: await run.exited, out: run.stdout(), err: run.stderr() };
  };

  const listed = await cli('tokens', 'list', '--json');
  expect(listed).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(listed.out)).toEqual([expect.objectContaining({ token_id: jti, client_id: 'orders-worker', state: 'active' })]);

  const shown = await cli('tokens', 'show', jti);
  expect(shown.code).toBe(0);
  expect(shown.out).toMatch(new RegExp(`^token id +${jti}$`, 'm'));
  expect(shown.out).toContain('(issued directly; nothing exchanged from it)');

  const missing = await cli('tokens', 'show', 'no-such-token');
  expect(missing).toEqual({ code: 1, out: '', err: 'tether: no token with id "no-such-token" in the ledger\n' });

  const revoked = await cli('tokens', 'revoke', jti, '--reason', 'leaked in a log');
  expect(revoked.code).toBe(0);
  expect(revoked.out).toMatch(/^revoked 1 token \(token .+, with tokens exchanged from them\)$/m);

  const clients = await cli('clients', 'list', '--json');
  expect(JSON.parse(clients.out).map((client: { client_id: string }) => client.client_id)).toEqual(['orders-worker', 'payments-api', 'orders-api', 'reports-api', 'reporting-cli']);

  const tail = await cli('ledger', 'tail', '-n', '50', '--json');
  const events = tail.out.trim().split('\n').map((line) => JSON.parse(line) as { type: string; actor: string | null; token_id: string | null; details: Record<string, unknown> | null });
  expect(events.find((event) => event.type === 'token.revoked' && event.token_id === jti)?.actor).toMatch(/^admin:dev-credential \(cli:[^@]+@.+\)$/);
  expect(events.filter((event) => event.type === 'admin.called').map((event) => event.details!.operation))
    .toEqual(['tokens.list', 'tokens.show', 'tokens.show', 'tokens.revoke', 'clients.list']);

  dev.child.kill('SIGTERM');
  expect(await dev.exited).toBe(0);
  expect(existsSync(credentialFile)).toBe(false);

  // No server: the same command reads the database itself.
  const local = await cli('tokens', 'list', '--json');
  expect(local.code).toBe(0);
  expect(JSON.parse(local.out)).toEqual([expect.objectContaining({ token_id: jti, state: 'revoked' })]);
});

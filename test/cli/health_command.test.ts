import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { registerHealthCommand } from '../../src/cli/health_command.js';
import { startTether } from '../../src/testing/start_tether.js';
import { openTestDatabase } from '../support/database.js';
import { Captured } from './cli_support.js';

// `tether health --config FILE`: the container health check, over whatever listeners the file names.

let workdir: string;
const closers: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-health-'));
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await rm(workdir, { recursive: true, force: true });
});

async function health(listeners: Record<string, { host: string; port: number }>, ...args: string[]): Promise<{ exitCode: number; lines: string[] }> {
  const configFile = path.join(workdir, 'tether.config.yaml');
  await writeFile(configFile, JSON.stringify({
    issuer: 'https://tether.example.test',
    listeners,
    resources: [{ uri: 'https://api.example.test', scopes: ['read'] }],
    clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: 'a-secret-of-enough-length' } }],
  }));
  const program = new Command('tether').exitOverride();
  const out = new Captured();
  registerHealthCommand(program, out);
  const previous = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'tether', 'health', '--config', configFile, ...args]);
    return { exitCode: Number(process.exitCode ?? 0), lines: out.text.trimEnd().split('\n') };
  } finally {
    process.exitCode = previous;
  }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('tether health', () => {
  test('asks /readyz over HTTPS on a listener bound to every interface, through loopback, and exits 0 when Tether is ready', async () => {
    const database = await openTestDatabase();
    const tether = await startTether({ database });
    closers.push(() => database.close(), () => tether.close());
    const port = Number(new URL(tether.issuer).port);
    expect(await health({ https: { host: '0.0.0.0', port } })).toEqual({
      exitCode: 0, lines: [`ready      https://127.0.0.1:${port}/readyz  200 {"status":"ready"}`],
    });

    // Tether's own readiness: its database gone, /readyz answers 503 and the check fails.
    await database.close();
    const result = await health({ https: { host: '127.0.0.1', port } });
    expect(result.exitCode).toBe(1);
    expect(result.lines).toEqual([expect.stringMatching(new RegExp(`^NOT READY  https://127\\.0\\.0\\.1:${port}/readyz  503 \\{"status":"not ready","reason":"database"\\}$`))]);
  });

  test('every configured listener must be ready: a plain HTTP listener answering 503 fails the check', async () => {
    const database = await openTestDatabase();
    const tether = await startTether({ database });
    closers.push(() => database.close(), () => tether.close());
    const notReady = http.createServer((_, res) => {
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"status":"not ready"}');
    });
    const httpPort = await listen(notReady);
    const httpsPort = Number(new URL(tether.issuer).port);
    expect(await health({ https: { host: '127.0.0.1', port: httpsPort }, http: { host: '127.0.0.1', port: httpPort } })).toEqual({
      exitCode: 1,
      lines: [`ready      https://127.0.0.1:${httpsPort}/readyz  200 {"status":"ready"}`, `NOT READY  http://127.0.0.1:${httpPort}/readyz  503 {"status":"not ready"}`],
    });
  });

  test('a refused connection, and a listener that never answers (bounded by --timeout), are not ready', async () => {
    const refused = await closedPort();
    expect(await health({ http: { host: '127.0.0.1', port: refused } })).toEqual({ exitCode: 1, lines: [`NOT READY  http://127.0.0.1:${refused}/readyz  ECONNREFUSED`] });

    const sockets: Socket[] = [];
    const silent = createServer((socket) => { sockets.push(socket); });
    const port = await listen(silent);
    // Closed before the server (closers run last-first): close() waits for open connections.
    closers.push(async () => sockets.forEach((socket) => socket.destroy()));
    expect(await health({ https: { host: '127.0.0.1', port } }, '--timeout', '300')).toEqual({ exitCode: 1, lines: [`NOT READY  https://127.0.0.1:${port}/readyz  no answer within 300 ms`] });
  });

  test('no listener configured is not healthy; a bad --timeout is refused', async () => {
    const none = await health({});
    expect(none.exitCode).toBe(1);
    expect(none.lines).toEqual([expect.stringMatching(/^NOT READY {2}.*tether\.config\.yaml configures no listener$/)]);
    await expect(health({ http: { host: '127.0.0.1', port: 1 } }, '--timeout', 'soon')).rejects.toThrow('--timeout: expected a positive number of milliseconds (got "soon")');
  });
});

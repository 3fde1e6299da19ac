import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { listeningProcess } from '../../src/cli/port_owner.js';
import { parseConfig } from '../../src/config/load_config.js';
import { runTetherToEnd } from './cli_support.js';

// Errors that say what to do: which port is taken and by whom, which setting names an unreachable
// database; and an issuer that follows the port unless it was set.

let workdir: string;
let holder: Server;
let heldPort: number;

beforeAll(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-errors-'));
  holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  heldPort = (holder.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => holder.close(resolve));
  await rm(workdir, { recursive: true, force: true });
});

describe('a port in use', () => {
  test('the machine tells which process listens on a port', () => {
    expect(listeningProcess(heldPort)).toEqual({ pid: process.pid, command: expect.stringContaining('node') });
    expect(listeningProcess(1)).toBeUndefined();
  });

  test('tether dev: one line naming the port, the process holding it and the variable that changes it; nothing else started', async () => {
    const run = await runTetherToEnd(['dev'], {
      DATABASE_URL: undefined, TETHER_ISSUER: undefined, TETHER_HTTPS_PORT: String(heldPort), TETHER_HTTP_PORT: '0',
    }, workdir);
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 1, stdout: '' });
    expect(run.stderr.trimEnd().split('\n')).toEqual([
      `tether: cannot listen on 127.0.0.1:${heldPort} (https): the port is in use by process ${process.pid} (${listeningProcess(heldPort)!.command}); ` +
        'stop that process, or choose another port with TETHER_HTTPS_PORT=<port> (or the built-in development configuration\'s listeners.https.port); ' +
        'an issuer derived from the port follows it',
    ]);
  }, 120_000);

  test('a configuration file: the field in that file is named too', async () => {
    await writeFile(path.join(workdir, 'ports.yaml'), [
      'dataDir: ports-data',
      `listeners: { https: { port: ${heldPort} } }`,
      'resources: [{ uri: "https://api.example" }]',
      'clients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" } }]',
      '',
    ].join('\n'));
    const run = await runTetherToEnd(['dev', '--config', 'ports.yaml'], { DATABASE_URL: undefined, TETHER_ISSUER: undefined, TETHER_HTTPS_PORT: undefined }, workdir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^tether: cannot listen on 127\\.0\\.0\\.1:${heldPort} \\(https\\): the port is in use by process ${process.pid} .*TETHER_HTTPS_PORT=<port> \\(or listeners\\.https\\.port in ports\\.yaml\\)`));
    expect(run.stderr).not.toMatch(/^\s+at /m);
  }, 120_000);
});

describe('an unreachable database', () => {
  test('tether start: names the URL without its password and DATABASE_URL', async () => {
    await writeFile(path.join(workdir, 'start.yaml'), [
      'issuer: https://auth.errors.test',
      'listeners: { http: { port: 0 } }',
      'database: { connectTimeout: 1, acquireTimeout: 1 }',
      'resources: [{ uri: "https://api.example" }]',
      'clients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" } }]',
      '',
    ].join('\n'));
    const run = await runTetherToEnd(['start', '--config', 'start.yaml'], {
      DATABASE_URL: 'postgres://tether:not-this-password@127.0.0.1:1/tether', TETHER_KEY_ENCRYPTION_SECRET: 'server-errors-key-encryption-secret-0123',
    }, workdir);
    expect(run.code).toBe(1);
    const lines = run.stderr.trimEnd().split('\n').filter((line) => line.startsWith('tether: '));
    expect(lines).toEqual([
      'tether: cannot connect to the database at postgres://tether:***@127.0.0.1:1/tether (ECONNREFUSED): is PostgreSQL running there and does the URL name it? ' +
        'It is set by DATABASE_URL; unset DATABASE_URL to use the embedded database (tether dev)',
    ]);
    expect(run.stderr).not.toContain('not-this-password');
  }, 120_000);
});

describe('the issuer follows the port unless it was set', () => {
  const base = {
    resources: [{ uri: 'https://api.example' }],
    clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef0123' } }],
  };
  test.each([
    ['absent, from the https listener', { listeners: { https: { port: 8443 } } }, {}, 'https://localhost:8443'],
    ['auto', { issuer: 'auto', listeners: { https: { port: 8443 } } }, {}, 'https://localhost:8443'],
    ['absent, TETHER_HTTPS_PORT moves it', { listeners: { https: { port: 8443 } } }, { TETHER_HTTPS_PORT: '9443' }, 'https://localhost:9443'],
    ['auto, TETHER_HTTPS_PORT moves it', { issuer: 'auto', listeners: { https: { port: 8443 } } }, { TETHER_HTTPS_PORT: '9443' }, 'https://localhost:9443'],
    ['set in the file: kept', { issuer: 'https://auth.example.com', listeners: { https: { port: 8443 } } }, { TETHER_HTTPS_PORT: '9443' }, 'https://auth.example.com'],
    ['set by TETHER_ISSUER: kept', { listeners: { https: { port: 8443 } } }, { TETHER_HTTPS_PORT: '9443', TETHER_ISSUER: 'https://proxy.example' }, 'https://proxy.example'],
    ['from a named host', { listeners: { https: { host: 'auth.internal', port: 443 } } }, {}, 'https://auth.internal'],
    ['from a wildcard address', { listeners: { https: { host: '0.0.0.0', port: 8443 } } }, {}, 'https://localhost:8443'],
    ['http only', { listeners: { http: { port: 8080 } } }, {}, 'http://localhost:8080'],
  ] as [string, Record<string, unknown>, NodeJS.ProcessEnv, string][])('%s', (_what, raw, env, issuer) => {
    expect(parseConfig({ ...base, ...raw }, { env }).issuer).toBe(issuer);
  });

  test.each([
    [{ listeners: { https: { port: 0 } } }, 'configuration: issuer: cannot be derived from listeners.https.port 0 (any free port): set a port, or set issuer'],
    [{ issuer: 'auto' }, 'configuration: issuer: no listener to derive it from: set issuer to the URL clients use'],
  ])('no issuer to derive: %j', (raw, message) => {
    expect(() => parseConfig({ ...base, ...raw })).toThrow(message);
  });

  test('a parsed configuration parses to itself', () => {
    const parsed = parseConfig({ ...base, listeners: { https: { port: 8443 } } });
    expect(parseConfig(parsed)).toEqual(parsed);
  });
});

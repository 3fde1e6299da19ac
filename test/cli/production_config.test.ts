import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadDevConfig, loadProductionConfig } from '../../src/cli/run_server.js';
import { ConfigError } from '../../src/config/load_config.js';

/** `tether start` accepts client secrets only over TLS; only a development configuration may opt in. */

let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'tether-production-config-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function configFile(allowClientSecrets: boolean): Promise<string> {
  const file = path.join(directory, `tether-${allowClientSecrets}.config.yaml`);
  await writeFile(file, [
    'issuer: https://auth.example',
    'databaseUrl: postgres://tether@127.0.0.1:5432/tether',
    `listeners: { http: { port: 8080, allowClientSecrets: ${allowClientSecrets} } }`,
    'resources: [{ uri: "https://api.example", scopes: [read] }]',
    'clients: [{ id: c, owner: o, purpose: p, binding: dpop, auth: { method: client_secret_basic, secret: "0123456789abcdef0123" }, resources: { "https://api.example": [read] } }]',
    '',
  ].join('\n'));
  return file;
}

test('tether start refuses listeners.http.allowClientSecrets, naming the field', async () => {
  const file = await configFile(true);
  const failure = loadProductionConfig(file);
  await expect(failure).rejects.toBeInstanceOf(ConfigError);
  await expect(failure).rejects.toThrow(/listeners\.http\.allowClientSecrets: client secrets over plain HTTP are for development/);
});

test('tether dev accepts it; without it, the default is false', async () => {
  expect((await loadDevConfig(await configFile(true))).listeners.http).toMatchObject({ allowClientSecrets: true });
  expect((await loadProductionConfig(await configFile(false))).listeners.http).toMatchObject({ allowClientSecrets: false });
});

test('the built-in development configuration does not opt in (its secret client uses the HTTPS listener)', async () => {
  const cwd = process.cwd();
  process.chdir(directory);
  try {
    expect((await loadDevConfig(undefined)).listeners.http).toMatchObject({ allowClientSecrets: false });
  } finally {
    process.chdir(cwd);
  }
});

// `tether authz`: the configuration validated with every mistake named by file and path (exit 2),
// a real process listening and answering as the forward-auth server, its port taken (exit 1), SIGTERM.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { runCli } from '../../src/cli/program.js';
import { parseAuthzConfig } from '../../src/config/authz_config.js';
import { freePort } from '../support/nginx.js';
import { runTetherProcess, waitFor } from '../support/tether_process.js';
import { rawRequest } from '../support/raw_request.js';
import { Captured, runTetherToEnd } from './cli_support.js';

let directory: string;

const valid = (port: number) => ({
  issuer: 'https://tether.example', audience: 'https://orders.example', publicBaseUrl: 'https://api.example', gateway: 'nginx',
  listen: { host: '127.0.0.1', port }, trustedGateways: ['127.0.0.1'], clientCertHeader: 'x-ssl-client-cert',
  routes: [{ method: 'GET', path: '/orders', scopes: ['orders:read'] }],
});

beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'tether-authz-cli-'));
});

afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function check(config: unknown, name = 'authz.yaml') {
  const file = path.join(directory, name);
  await writeFile(file, typeof config === 'string' ? config : stringify(config));
  const out = new Captured();
  const err = new Captured();
  const code = await runCli(['node', 'tether', 'authz', '--config', file, '--check', '--json'], { out, err });
  return { code, out: out.text, err: err.text, file };
}

describe('tether authz --check', () => {
  test('a valid configuration → 0 and what it configures', async () => {
    const result = await check(valid(9191));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.out)).toEqual({ valid: true, audience: 'https://orders.example', routes: 1 });
  });

  test('every mistake named by the file and its path → 2', async () => {
    const result = await check({
      ...valid(9191), issuer: 'tether.example', gateway: 'apache', trustedGateways: ['gateway.local'], reports: { endpoint: 'x' },
      routes: [{ method: 'GET', path: '/orders', scopes: 'orders:read' }],
    });
    expect(result.code).toBe(2);
    const lines = result.err.trimEnd().split('\n');
    expect(lines[0]).toBe(`tether: ${result.file}: 5 problems`);
    expect(lines.slice(1).map((line) => line.trim().replace(/:.*$/, ''))).toEqual(expect.arrayContaining(['issuer', 'gateway', 'trustedGateways[0]', 'routes[0].scopes', '(top level)']));
    expect(result.err).toContain('Unrecognized key: "reports"');
  });

  test('report needs the use-report resource, the client and its certificate', async () => {
    const result = await check({ ...valid(9191), report: { clientId: 'orders-api', certFile: 'a.pem' } });
    expect(result.code).toBe(2);
    expect(result.err).toContain('report.resource:');
    expect(result.err).toContain('report.keyFile:');
  });

  test('a route the package cannot match as written → 2, naming the route', async () => {
    const result = await check({ ...valid(9191), routes: [{ method: 'GET', path: '/a/**/b' }] });
    expect(result.code).toBe(2);
    expect(result.err).toBe(`tether: ${result.file}: routes[0].path: "**" may only be the last segment\n`);
  });

  test('introspection needs a secret or a certificate, not both; envoyPathPrefix only for envoy', async () => {
    const result = await check({ ...valid(9191), envoyPathPrefix: '/check', revocation: { introspect: { clientId: 'orders-api', clientSecret: 's'.repeat(32), certFile: 'a.pem', keyFile: 'a.key' } } });
    expect(result.code).toBe(2);
    expect(result.err).toContain('revocation.introspect: give clientSecret, or certFile and keyFile (not both)');
    expect(result.err).not.toContain('s'.repeat(32));
    const envoy = await check({ ...valid(9191), envoyPathPrefix: '/check' });
    expect(envoy.err).toBe(`tether: ${envoy.file}: envoyPathPrefix: only for gateway: envoy\n`);
  });

  test('not YAML, or no file → 2', async () => {
    expect((await check('issuer: [\n')).code).toBe(2);
    const out = new Captured();
    const err = new Captured();
    expect(await runCli(['node', 'tether', 'authz', '--config', path.join(directory, 'missing.yaml'), '--check'], { out, err })).toBe(2);
    expect(err.text).toContain('missing.yaml: cannot read the configuration file (ENOENT)');
  });
});

describe('tether authz, running', () => {
  test('listens, refuses untrusted peers, answers its gateway, stops on SIGTERM (0); a taken port → 1', async () => {
    const port = await freePort();
    const file = path.join(directory, 'running.yaml');
    await writeFile(file, stringify(valid(port)));
    const authz = runTetherProcess(['authz', '--config', file, '--json'], {}, directory);
    try {
      await waitFor(() => authz.stdout().includes('listening') || authz.child.exitCode !== null, 'tether authz to listen');
      expect(JSON.parse(authz.stdout())).toEqual({ listening: `http://127.0.0.1:${port}`, audience: 'https://orders.example', gateway: 'nginx' });
      const stranger = await rawRequest({ connectTo: `http://127.0.0.1:${port}`, target: '/', localAddress: '127.0.0.3', headers: { host: 'authz', 'x-original-method': 'GET', 'x-original-uri': '/orders' } });
      expect(stranger.status).toBe(403);
      const gateway = await rawRequest({ connectTo: `http://127.0.0.1:${port}`, target: '/', headers: { host: 'authz', 'x-original-method': 'GET', 'x-original-uri': '/orders' } });
      expect(gateway.status).toBe(401);
      expect(gateway.headers['www-authenticate']).toBe('Bearer realm="https://orders.example", DPoP realm="https://orders.example", algs="ES256 PS256 EdDSA Ed25519"');
      await waitFor(() => authz.logged(/forward-auth refused/).length >= 2, 'the refusals in the log', 10_000);
      expect(authz.logged(/forward-auth refused/)).toEqual([
        expect.objectContaining({ status: 403, code: 'ERR_UNTRUSTED_PEER', peer: '127.0.0.3' }),
        expect.objectContaining({ status: 401, code: 'ERR_NO_CREDENTIALS', peer: '127.0.0.1', method: 'GET', path: '/orders' }),
      ]);

      const taken = await runTetherToEnd(['authz', '--config', file], {}, directory);
      expect(taken.code).toBe(1);
      expect(taken.stderr).toContain(`${file}: listen 127.0.0.1:${port} is in use by another process`);
    } finally {
      expect(await authz.stop()).toBe(0);
    }
  });
});

describe('docs/gateways.md', () => {
  test('its authz.yaml and route examples are valid configurations', async () => {
    const doc = await readFile(new URL('../../docs/gateways.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => parse(match[1]!) as Record<string, unknown>);
    const full = blocks.find((block) => 'issuer' in block)!;
    expect(parseAuthzConfig(full, 'docs/gateways.md')).toMatchObject({ routes: [{}, {}], report: { clientId: 'orders-api' } });
    const routesOnly = blocks.find((block) => Object.keys(block).join() === 'routes')!;
    expect(parseAuthzConfig({ ...full, routes: routesOnly.routes }, 'docs/gateways.md').routes).toHaveLength(4);
  });
});

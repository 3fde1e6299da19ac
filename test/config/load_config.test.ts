import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load_config.js';
import { DEV_CONFIG } from '../../src/config/dev_defaults.js';
import { databaseTimeoutsMs } from '../../src/config/schema.js';

const minimal = () => ({
  issuer: 'https://auth.example',
  resources: [{ uri: 'https://api.example', scopes: ['read'] }],
  clients: [{ id: 'c1', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=c1' }, resources: { 'https://api.example': ['read'] } }],
  listeners: { https: { port: 8443 } },
});

function messageOf(raw: unknown, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(raw, { source: 'tether.config.yaml', env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  test('defaults: 5 minute JWT tokens, ES256, chain depth 3', () => {
    const config = parseConfig(minimal());
    expect(config.resources[0]).toMatchObject({ lifetime: 300, format: 'jwt', allowBearer: false });
    expect(config.signing.algorithm).toBe('ES256');
    expect(config.exchange.maxChainDepth).toBe(3);
  });

  test('durations accept seconds and units', () => {
    const raw = minimal();
    raw.resources[0] = { ...raw.resources[0]!, lifetime: '2m' } as never;
    expect(parseConfig(raw).resources[0]!.lifetime).toBe(120);
  });

  test.each([
    ['a bad enum names the path and the value', (raw: ReturnType<typeof minimal>) => { (raw.clients[0] as Record<string, unknown>).binding = 'magic'; }, /^tether\.config\.yaml: clients\[0\]\.binding: .*\(got "magic"\)$/],
    ['a missing field', (raw: ReturnType<typeof minimal>) => { delete (raw.clients[0] as Record<string, unknown>).owner; }, /clients\[0\]\.owner/],
    ['an unknown field', (raw: ReturnType<typeof minimal>) => { (raw.resources[0] as Record<string, unknown>).audience = 'x'; }, /resources\[0\].*audience/],
    ['a resource with a fragment', (raw: ReturnType<typeof minimal>) => { raw.resources[0]!.uri = 'https://api.example#x'; }, /resources\[0\]\.uri: expected an absolute URI without a fragment/],
    ['a client resource that is not registered', (raw: ReturnType<typeof minimal>) => { (raw.clients[0] as Record<string, unknown>).resources = { 'https://other.example': ['read'] }; }, /clients\[0\]\.resources\.https:\/\/other\.example: unknown resource/],
    ['a scope the resource does not declare', (raw: ReturnType<typeof minimal>) => { raw.clients[0]!.resources = { 'https://api.example': ['write'] }; }, /scope "write" is not declared/],
    ['binding none on a resource without allowBearer', (raw: ReturnType<typeof minimal>) => { (raw.clients[0] as Record<string, unknown>).binding = 'none'; }, /clients\[0\]\.binding: binding "none" needs resources that allow bearer tokens/],
    ['a short client secret, without echoing it', (raw: ReturnType<typeof minimal>) => { (raw.clients[0] as Record<string, unknown>).auth = { method: 'client_secret_basic', secret: 'short' }; }, /^tether\.config\.yaml: clients\[0\]\.auth\.secret: client secrets must be at least 16 characters$/],
    ['tls_client_auth with two subject values', (raw: ReturnType<typeof minimal>) => { (raw.clients[0] as Record<string, unknown>).auth = { method: 'tls_client_auth', subjectDn: 'CN=a', sanDns: 'a' }; }, /exactly one of subjectDn/],
    ['duplicate client ids', (raw: ReturnType<typeof minimal>) => { raw.clients.push({ ...raw.clients[0]! }); }, /clients\[1\]\.id: duplicate client id "c1"/],
    ['a trusted proxy that is not an address', (raw: ReturnType<typeof minimal>) => { Object.assign(raw, { trustedProxies: ['10.0.0.0/8', 'nginx.internal'] }); }, /^tether\.config\.yaml: trustedProxies\[1\]: expected an IP address or a CIDR block/],
    ['a trusted proxy CIDR with a bad prefix', (raw: ReturnType<typeof minimal>) => { Object.assign(raw, { trustedProxies: ['10.0.0.0/33'] }); }, /trustedProxies\[0\]: expected an IP address or a CIDR block/],
    ['allowClientSecrets that is not a boolean', (raw: ReturnType<typeof minimal>) => { Object.assign(raw.listeners, { http: { port: 8080, allowClientSecrets: 'yes' } }); }, /listeners\.http\.allowClientSecrets: /],
  ])('%s', (_label, mutate, expected) => {
    const raw = minimal();
    mutate(raw);
    expect(messageOf(raw)).toMatch(expected);
  });

  test('database waits: documented defaults; seconds, fractions and ms/s/m units; out-of-range and malformed values name the path', () => {
    expect(parseConfig(minimal()).database).toEqual({ statementTimeout: 5, acquireTimeout: 3, connectTimeout: 3, readinessTimeout: 2, queueLimit: 1000 });
    const config = parseConfig({ ...minimal(), database: { statementTimeout: 2, acquireTimeout: '1.5s', connectTimeout: '750ms', readinessTimeout: '1m', queueLimit: 50 } });
    expect(config.database).toEqual({ statementTimeout: 2, acquireTimeout: 1.5, connectTimeout: 0.75, readinessTimeout: 60, queueLimit: 50 });
    // Seconds, like every duration: a parsed configuration parses again to itself (the harness re-parses).
    expect(parseConfig(config).database).toEqual(config.database);
    expect(databaseTimeoutsMs(config.database)).toEqual({ statementTimeout: 2000, acquireTimeout: 1500, connectTimeout: 750, readinessTimeout: 60_000 });
    // A partial section keeps the other defaults.
    expect(parseConfig({ ...minimal(), database: { queueLimit: 10 } }).database).toMatchObject({ statementTimeout: 5, queueLimit: 10 });
    expect(messageOf({ ...minimal(), database: { statementTimeout: '5 seconds' } })).toMatch(/^tether\.config\.yaml: database\.statementTimeout: expected a duration such as 2, "1\.5s", "500ms" or "1m"/);
    expect(messageOf({ ...minimal(), database: { acquireTimeout: '5ms' } })).toMatch(/database\.acquireTimeout: expected a duration between 10ms and 1h/);
    expect(messageOf({ ...minimal(), database: { connectTimeout: '61m' } })).toMatch(/database\.connectTimeout: expected a duration between 10ms and 1h/);
    expect(messageOf({ ...minimal(), database: { readinessTimeout: -1 } })).toMatch(/database\.readinessTimeout/);
    expect(messageOf({ ...minimal(), database: { queueLimit: 0 } })).toMatch(/database\.queueLimit/);
    expect(messageOf({ ...minimal(), database: { queueLimit: 1.5 } })).toMatch(/database\.queueLimit/);
    expect(messageOf({ ...minimal(), database: { poolSize: 3 } })).toMatch(/database.*poolSize/);
  });

  test('environment overrides the file, and a bad override is reported by path', () => {
    const config = parseConfig(minimal(), { env: { TETHER_ISSUER: 'https://other.example', TETHER_HTTPS_PORT: '9443' } });
    expect(config.issuer).toBe('https://other.example');
    expect(config.listeners.https!.port).toBe(9443);
    expect(messageOf(minimal(), { TETHER_HTTPS_PORT: 'eighty' })).toMatch(/listeners\.https\.port: .*\(got "eighty"\)/);
  });

  test('listener hosts from the environment: one file for 0.0.0.0 in a container and loopback outside it', () => {
    const raw = { ...minimal(), listeners: { https: { host: '0.0.0.0', port: 8443 }, http: { host: '0.0.0.0', port: 8080 } } };
    const config = parseConfig(raw, { env: { TETHER_HTTPS_HOST: '127.0.0.1', TETHER_HTTP_HOST: '::1' } });
    expect(config.listeners).toEqual({ https: { host: '127.0.0.1', port: 8443 }, http: { host: '::1', port: 8080, allowClientSecrets: false } });
    // A host for a listener the file does not have names the missing port.
    expect(messageOf(minimal(), { TETHER_HTTP_HOST: '127.0.0.1' })).toMatch(/^tether\.config\.yaml: listeners\.http\.port: /);
  });

  test('YAML and JSON files; a syntax error names the line', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-config-'));
    const json = path.join(dir, 'tether.config.json');
    await writeFile(json, JSON.stringify(minimal()));
    expect((await loadConfigFile(json, {})).issuer).toBe('https://auth.example');

    const broken = path.join(dir, 'broken.yaml');
    await writeFile(broken, 'issuer: https://a\nresources: [\n  - x: : y\n');
    await expect(loadConfigFile(broken, {})).rejects.toThrow(/broken\.yaml: not valid YAML or JSON at line \d+/);
    await expect(loadConfigFile(path.join(dir, 'missing.yaml'), {})).rejects.toThrow(/cannot read the configuration file \(ENOENT\)/);
  });

  test('the documented example and the development defaults are valid', async () => {
    const example = await loadConfigFile(new URL('../../docs/tether.config.example.yaml', import.meta.url).pathname, {});
    expect(example.clients.map((client) => client.id)).toEqual(['orders-worker', 'payments-api', 'nightly-report']);
    expect(parseConfig(DEV_CONFIG).clients.map((client) => client.id)).toEqual(['orders-worker', 'payments-api', 'orders-api', 'reports-api', 'reporting-cli']);
  });
});

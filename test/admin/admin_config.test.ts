import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import { startModeIssues } from '../../src/config/schema.js';

// The `admin` section: defaults, and every name it uses must be declared (config/schema.ts adminIssues).

const ADMIN = 'https://tether.example/admin';

function raw(admin: Record<string, unknown> | undefined, adminResources: Record<string, string[]> = { [ADMIN]: [] }): Record<string, unknown> {
  return {
    issuer: 'https://tether.example',
    resources: [{ uri: 'https://api.example' }, { uri: ADMIN }],
    clients: [
      { id: 'ops', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef0123' }, resources: adminResources },
      { id: 'app', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef0123' }, resources: { 'https://api.example': [] } },
    ],
    ...(admin ? { admin } : {}),
  };
}

const errorOf = (value: unknown) => {
  try {
    parseConfig(value);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return undefined;
};

test('defaults: not enabled (tether dev turns it on), served at /admin, no admin clients', () => {
  expect(parseConfig(raw(undefined)).admin).toEqual({ path: '/admin', clients: [] });
});

test('admin clients with the admin resource', () => {
  expect(parseConfig(raw({ enabled: true, resource: ADMIN, clients: ['ops'] })).admin).toEqual({ enabled: true, path: '/admin', resource: ADMIN, clients: ['ops'] });
});

test('refused: an undeclared resource, admin clients without one, an unknown client, a client not permitted the resource, a bad path', () => {
  expect(errorOf(raw({ resource: 'https://other.example/admin' }))).toMatch(/admin\.resource: unknown resource "https:\/\/other\.example\/admin"/);
  expect(errorOf(raw({ clients: ['ops'] }))).toMatch(/admin\.resource: admin clients need the admin API's resource URI/);
  expect(errorOf(raw({ resource: ADMIN, clients: ['nobody'] }))).toMatch(/admin\.clients\[0\]: unknown client "nobody"/);
  expect(errorOf(raw({ resource: ADMIN, clients: ['app'] }))).toMatch(/admin\.clients\[0\]: client "app" may not obtain tokens for https:\/\/tether\.example\/admin/);
  expect(errorOf(raw({ path: 'admin' }))).toMatch(/admin\.path: expected an absolute path/);
  expect(errorOf(raw({ path: '/admin/../x' }))).toMatch(/admin\.path: expected an absolute path/);
  expect(errorOf(raw({ path: '/token/admin' }))).toMatch(/admin\.path: collides with one of Tether's endpoints/);
});

test('tether start with the admin API enabled needs admin clients (there is no local credential)', () => {
  expect(startModeIssues(parseConfig(raw({ enabled: true })))).toEqual([{ path: ['admin', 'clients'], message: expect.stringMatching(/^required by tether start when admin\.enabled/) }]);
  expect(startModeIssues(parseConfig(raw({ enabled: true, resource: ADMIN, clients: ['ops'] })))).toEqual([]);
});

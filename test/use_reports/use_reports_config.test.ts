import { ConfigError, parseConfig } from '../../src/config/load_config.js';

// The `useReports` section: defaults, and the names it uses must be declared (config/schema.ts useReportsIssues).

const USE = 'https://tether.example/use-reports';

function raw(useReports: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    issuer: 'https://tether.example',
    resources: [{ uri: 'https://api.example', servedBy: ['api'] }, { uri: USE }],
    clients: [
      { id: 'api', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef0123' }, resources: { [USE]: [] } },
    ],
    ...(useReports ? { useReports } : {}),
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

test('defaults: not served (no resource), /use-reports, events up to a day old', () => {
  expect(parseConfig(raw(undefined)).useReports).toEqual({ path: '/use-reports', maxEventAge: 86_400 });
});

test('served with a declared resource; maxEventAge as a duration', () => {
  expect(parseConfig(raw({ resource: USE, maxEventAge: '1h' })).useReports).toEqual({ path: '/use-reports', resource: USE, maxEventAge: 3600 });
});

test('refused, each naming its path: an undeclared resource, a bad path, a path of Tether\'s own or the admin API\'s, a bad duration, an unknown member', () => {
  expect(errorOf(raw({ resource: 'https://other.example/use' }))).toMatch(/useReports\.resource: unknown resource "https:\/\/other\.example\/use"/);
  expect(errorOf(raw({ resource: USE, path: 'use-reports' }))).toMatch(/useReports\.path: expected an absolute path/);
  expect(errorOf(raw({ resource: USE, path: '/use/../x' }))).toMatch(/useReports\.path: expected an absolute path/);
  expect(errorOf(raw({ resource: USE, path: '/token/use' }))).toMatch(/useReports\.path: collides with one of Tether's endpoints/);
  expect(errorOf(raw({ resource: USE, path: '/.well-known/use' }))).toMatch(/useReports\.path: /);
  expect(errorOf(raw({ resource: USE, path: '/admin/use' }))).toMatch(/useReports\.path: overlaps the admin API's path \/admin/);
  expect(errorOf(raw({ resource: USE, maxEventAge: 'a while' }))).toMatch(/useReports\.maxEventAge: expected a duration/);
  expect(errorOf(raw({ resource: USE, clients: ['api'] }))).toMatch(/useReports: .*clients/i);
});

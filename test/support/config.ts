/** A configuration with one client per authentication method and binding, for the token-path tests. */
export const ORDERS = 'https://orders.test.example';
export const PAYMENTS = 'https://payments.test.example';
export const REPORTS = 'https://reports.test.example';
export const LEGACY = 'https://legacy.test.example';
export const UNKNOWN = 'https://unknown.test.example';

export const DPOP_SECRET = 'dpop-client-secret-0123456789abcdef';
export const LEGACY_SECRET = 'legacy-client-secret-0123456789abc';

export function testConfig(overrides: { clients?: Record<string, unknown>[] } = {}): Record<string, unknown> {
  return {
    resources: [
      { uri: ORDERS, scopes: ['orders:read', 'orders:write'], lifetime: '5m' },
      { uri: PAYMENTS, scopes: ['payments:read', 'payments:charge'], lifetime: 120 },
      { uri: REPORTS, scopes: ['reports:read'], format: 'opaque' },
      { uri: LEGACY, scopes: ['legacy:read'], allowBearer: true },
    ],
    clients: [
      {
        id: 'mtls-client', owner: 'team-a', purpose: 'tests', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=mtls-client' },
        resources: { [ORDERS]: ['orders:read', 'orders:write'], [PAYMENTS]: ['payments:read'], [REPORTS]: ['reports:read'] },
      },
      {
        id: 'default-client', owner: 'team-a', purpose: 'tests', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=default-client' },
        resources: { [ORDERS]: ['orders:read'] }, defaultResource: ORDERS,
      },
      {
        id: 'dpop-client', owner: 'team-b', purpose: 'tests', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: DPOP_SECRET },
        resources: { [ORDERS]: ['orders:read'], [REPORTS]: ['reports:read'] },
      },
      {
        id: 'legacy-client', owner: 'team-c', purpose: 'tests', binding: 'none',
        auth: { method: 'client_secret_post', secret: LEGACY_SECRET },
        resources: { [LEGACY]: ['legacy:read'] },
      },
      ...(overrides.clients ?? []),
    ],
  };
}

/**
 * The testing-harness tests' world: the orders API (JWT, introspected by orders-api), invoices (reached
 * by exchange), reports (opaque) and a legacy bearer API; one client per way of authenticating and binding.
 */
export const ORDERS = 'https://orders.harness.test';
export const INVOICES = 'https://invoices.harness.test';
export const REPORTS = 'https://reports.harness.test';
export const LEGACY = 'https://legacy.harness.test';

export const DPOP_SECRET = 'harness-dpop-secret-0123456789abcdef';
export const SECRET_MTLS_SECRET = 'harness-secret-mtls-0123456789abcdef';
export const LEGACY_SECRET = 'harness-legacy-secret-0123456789abcd';

export function harnessConfig(): Record<string, unknown> {
  return {
    resources: [
      { uri: ORDERS, scopes: ['orders:read', 'orders:write'], lifetime: 300, introspectors: ['orders-api'], servedBy: ['orders-api'] },
      { uri: INVOICES, scopes: ['orders:read'], lifetime: 300 },
      { uri: REPORTS, scopes: ['reports:read'], format: 'opaque' },
      { uri: LEGACY, scopes: ['legacy:read'], allowBearer: true },
    ],
    clients: [
      {
        id: 'worker', owner: 'team-a', purpose: 'harness tests', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=worker' },
        resources: { [ORDERS]: ['orders:read', 'orders:write'], [REPORTS]: ['reports:read'] },
      },
      {
        id: 'orders-api', owner: 'team-a', purpose: 'harness tests: exchanges and introspects', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=orders-api' },
        exchange: { targets: { [INVOICES]: ['orders:read'] }, actFor: ['worker'], acceptBoundSubjectTokens: true },
      },
      {
        id: 'dpop-worker', owner: 'team-b', purpose: 'harness tests', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: DPOP_SECRET },
        resources: { [ORDERS]: ['orders:read'] },
      },
      {
        id: 'secret-mtls', owner: 'team-b', purpose: 'harness tests: secret auth, certificate-bound tokens', binding: 'mtls',
        auth: { method: 'client_secret_post', secret: SECRET_MTLS_SECRET },
        resources: { [ORDERS]: ['orders:read'] },
      },
      {
        id: 'legacy', owner: 'team-c', purpose: 'harness tests', binding: 'none',
        auth: { method: 'client_secret_post', secret: LEGACY_SECRET },
        resources: { [LEGACY]: ['legacy:read'] },
      },
    ],
  };
}

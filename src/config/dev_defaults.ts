/**
 * The configuration `tether dev` uses when no `tether.config.yaml` is given: three APIs and three
 * clients that show each kind of binding. docs/tether.config.example.yaml is the same, annotated.
 */
export const DEV_CONFIG = {
  issuer: 'https://localhost:8443',
  dataDir: '.tether',
  listeners: {
    https: { host: '127.0.0.1', port: 8443 },
    http: { host: '127.0.0.1', port: 8080 },
  },
  resources: [
    { uri: 'https://orders.example.test', scopes: ['orders:read', 'orders:write'], lifetime: '5m' },
    // Served by payments-api: it may exchange the tokens callers send it (docs/token-exchange.md).
    // `orders:read` here is what a caller lets the payments API do on its behalf at the orders API:
    // scope names carry across an exchange.
    { uri: 'https://payments.example.test', scopes: ['payments:read', 'payments:charge', 'orders:read'], lifetime: '5m', servedBy: ['payments-api'] },
    { uri: 'https://reports.example.test', scopes: ['reports:read'], lifetime: '10m', format: 'opaque' },
  ],
  clients: [
    {
      id: 'orders-worker',
      owner: 'team-orders',
      purpose: 'processes orders; calls the orders and payments APIs',
      auth: { method: 'tls_client_auth', subjectDn: 'CN=orders-worker' },
      binding: 'mtls',
      resources: {
        'https://orders.example.test': ['orders:read', 'orders:write'],
        'https://payments.example.test': ['payments:charge', 'orders:read'],
      },
      defaultResource: 'https://orders.example.test',
    },
    {
      id: 'payments-api',
      owner: 'team-payments',
      purpose: 'the payments API; exchanges tokens it receives to read orders on the caller\'s behalf',
      auth: { method: 'tls_client_auth', subjectDn: 'CN=payments-api' },
      binding: 'mtls',
      resources: { 'https://payments.example.test': ['payments:read'] },
      exchange: {
        targets: { 'https://orders.example.test': ['orders:read'] },
        actFor: ['orders-worker'],
        acceptBoundSubjectTokens: true,
      },
    },
    {
      id: 'reporting-cli',
      owner: 'team-data',
      purpose: 'a command-line tool on a laptop; DPoP-bound tokens, no certificate',
      auth: { method: 'client_secret_basic', secret: 'dev-only-secret-reporting-cli-0001' },
      binding: 'dpop',
      resources: {
        'https://reports.example.test': ['reports:read'],
        'https://orders.example.test': ['orders:read'],
      },
    },
  ],
};

/**
 * `tether dev` with the built-in configuration also serves Prometheus metrics beside health on its
 * loopback HTTP listener (cli/run_server.ts). Not part of DEV_CONFIG, which the test harness runs
 * without that listener.
 */
export const DEV_METRICS = { listener: 'http', path: '/metrics' } as const;

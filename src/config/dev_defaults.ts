/**
 * The configuration `tether dev` uses when no `tether.config.yaml` is given: three APIs, the clients
 * that call them (each kind of binding) and the clients that are the APIs (they introspect their
 * tokens; payments-api also exchanges). docs/development.md walks through them with curl;
 * docs/tether.config.example.yaml annotates a production configuration of the same shape.
 */
export const DEV_CONFIG = {
  // No issuer: derived from the HTTPS listener (https://localhost:8443, or the port TETHER_HTTPS_PORT sets).
  dataDir: '.tether',
  listeners: {
    https: { host: '127.0.0.1', port: 8443 },
    http: { host: '127.0.0.1', port: 8080 },
  },
  resources: [
    // Introspectors: the API's own services may ask whether a token is active (RFC 7662); orders-api is
    // the identity of examples/orders_api.
    { uri: 'https://orders.example.test', scopes: ['orders:read', 'orders:write'], lifetime: '5m', introspectors: ['orders-api'] },
    // Served by payments-api: it may exchange the tokens callers send it (docs/token-exchange.md).
    // `orders:read` here is what a caller lets the payments API do on its behalf at the orders API:
    // scope names carry across an exchange.
    {
      uri: 'https://payments.example.test', scopes: ['payments:read', 'payments:charge', 'orders:read'], lifetime: '5m',
      servedBy: ['payments-api'], introspectors: ['payments-api'],
    },
    // Opaque tokens: introspection is the only way the reports API learns what one means.
    { uri: 'https://reports.example.test', scopes: ['reports:read'], lifetime: '10m', format: 'opaque', introspectors: ['reports-api'] },
    // Tether's use-report endpoint (docs/use-reports.md): the APIs' own clients report what their
    // verifiers saw with a bound token for this resource, each for the API it serves or introspects.
    { uri: 'https://use-reports.example.test', lifetime: '5m' },
  ],
  useReports: { resource: 'https://use-reports.example.test' },
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
      resources: { 'https://payments.example.test': ['payments:read'], 'https://use-reports.example.test': [] },
      exchange: {
        targets: { 'https://orders.example.test': ['orders:read'] },
        actFor: ['orders-worker'],
        acceptBoundSubjectTokens: true,
      },
    },
    {
      id: 'orders-api',
      owner: 'team-orders',
      purpose: 'the orders API (examples/orders_api); introspects the tokens it receives and reports their use',
      auth: { method: 'tls_client_auth', subjectDn: 'CN=orders-api' },
      binding: 'mtls',
      resources: { 'https://use-reports.example.test': [] },
    },
    {
      id: 'reports-api',
      owner: 'team-data',
      purpose: 'the reports API; introspects the opaque tokens it receives and reports their use',
      auth: { method: 'tls_client_auth', subjectDn: 'CN=reports-api' },
      binding: 'mtls',
      resources: { 'https://use-reports.example.test': [] },
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

/**
 * A chain of services for the token-exchange tests: A calls B, B calls C, C calls D.
 * A gets a token for B (client_credentials); B exchanges it for C (acting for A); C for D (acting
 * for B); D may not go one hop further (exchange.maxChainDepth 2). Each API names the services that
 * are it (`servedBy`): a delegate exchanges only tokens sent to an API it serves, so A's token for
 * its payroll API is useless to B even though B acts for A. The other clients are here to be
 * refused, each for one reason.
 */
export const API_B = 'https://b.chain.test';
export const API_C = 'https://c.chain.test';
export const API_D = 'https://d.chain.test';
export const API_E = 'https://e.chain.test';
export const VAULT = 'https://vault.chain.test';
export const C_VAULT = 'https://c-vault.chain.test';
/** An API A calls that B does not serve: A's tokens for it must never become B's. */
export const PAYROLL = 'https://payroll.chain.test';
export const SHORT = 'https://short.chain.test';
export const UNKNOWN = 'https://unknown.chain.test';

export const ROAMER_SECRET = 'roamer-client-secret-0123456789abcdef';
export const DPOP_SECRET = 'dpop-svc-secret-0123456789abcdefghij';

const READ = 'orders:read';
const WRITE = 'orders:write';

function mtlsClient(id: string, rest: Record<string, unknown>): Record<string, unknown> {
  return { id, owner: 'team-chain', purpose: 'token exchange tests', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: `CN=${id}` }, ...rest };
}

export function chainConfig(): Record<string, unknown> {
  return {
    exchange: { maxChainDepth: 2 },
    resources: [
      // b-strict is a second deployment of B, configured without acceptBoundSubjectTokens.
      { uri: API_B, scopes: [READ, WRITE, 'orders:refund'], lifetime: 120, servedBy: ['service-b', 'b-strict'] },
      // Longer than A's token: the exchanged token's expiry must still be capped by A's.
      { uri: API_C, scopes: [READ, WRITE], lifetime: 600, servedBy: ['service-c'] },
      { uri: API_D, scopes: [READ], lifetime: 600, servedBy: ['service-d'] },
      { uri: API_E, scopes: [READ], lifetime: 600 },
      // B's opaque-token API, and C's.
      { uri: VAULT, scopes: [READ], format: 'opaque', lifetime: 120, servedBy: ['service-b'] },
      { uri: C_VAULT, scopes: [READ], format: 'opaque', lifetime: 120, servedBy: ['service-c'] },
      { uri: SHORT, scopes: [READ], lifetime: 1, servedBy: ['service-b'] },
      // Served by a service that is not in this world; the scope name is one B may obtain at C.
      { uri: PAYROLL, scopes: [READ, WRITE], lifetime: 120 },
    ],
    clients: [
      mtlsClient('service-a', { resources: { [API_B]: [READ, WRITE], [VAULT]: [READ], [SHORT]: [READ], [PAYROLL]: [READ, WRITE] } }),
      mtlsClient('service-b', {
        resources: { [API_D]: [READ] },
        exchange: { targets: { [API_C]: [READ, WRITE], [VAULT]: [READ], [C_VAULT]: [READ] }, actFor: ['service-a'], acceptBoundSubjectTokens: true },
      }),
      mtlsClient('service-c', { exchange: { targets: { [API_D]: [READ] }, actFor: ['service-b'], acceptBoundSubjectTokens: true } }),
      mtlsClient('service-d', { exchange: { targets: { [API_E]: [READ] }, actFor: ['service-c'], acceptBoundSubjectTokens: true } }),
      // May act for A, but not with A's certificate-bound tokens.
      mtlsClient('b-strict', { exchange: { targets: { [API_C]: [READ] }, actFor: ['service-a'] } }),
      // May exchange, but for nobody else.
      mtlsClient('mallory', { exchange: { targets: { [API_C]: [READ] } } }),
      // Certificate-bound, authenticated by secret: the certificate is only its key, so another one can be tried.
      {
        id: 'roamer', owner: 'team-chain', purpose: 'token exchange tests', binding: 'mtls',
        auth: { method: 'client_secret_basic', secret: ROAMER_SECRET },
        resources: { [API_B]: [READ] }, exchange: { targets: { [API_C]: [READ] } },
      },
      {
        id: 'dpop-svc', owner: 'team-chain', purpose: 'token exchange tests', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: DPOP_SECRET },
        resources: { [API_B]: [READ] }, exchange: { targets: { [API_C]: [READ] } },
      },
    ],
  };
}

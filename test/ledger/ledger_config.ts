import type { Agent } from 'undici';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { basicAuth, postForm, startTestTether, type TokenResponse } from '../support/tether.js';

/**
 * The ledger tests' world: a worker calls the orders API (JWT) and the reports API (opaque); the
 * orders API exchanges the worker's token to call invoices, which exchanges again to call archive.
 * Each API has a resource-server client registered as its introspector, and the exchanging APIs
 * serve (`servedBy`) the API whose tokens they exchange. Exchange narrows scopes, so the downstream
 * APIs reuse the `orders:read` scope.
 */
export const ORDERS = 'https://orders.ledger.test';
export const REPORTS = 'https://reports.ledger.test';
export const INVOICES = 'https://invoices.ledger.test';
export const ARCHIVE = 'https://archive.ledger.test';
export const SHORT = 'https://short.ledger.test';
export const LEGACY = 'https://legacy.ledger.test';
export const VAULT = 'https://vault.ledger.test';

export const REPORTS_API_SECRET = 'reports-api-secret-0123456789abcdef';
export const STRANGER_SECRET = 'stranger-secret-0123456789abcdefgh';
export const DPOP_SECRET = 'ledger-dpop-secret-0123456789abcdef';
export const LEGACY_SECRET = 'ledger-legacy-secret-0123456789abcd';

function mtlsClient(id: string, rest: Record<string, unknown>): Record<string, unknown> {
  return { id, owner: `team-${id}`, purpose: `ledger tests: ${id}`, binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: `CN=${id}` }, ...rest };
}

export function ledgerConfig(): Record<string, unknown> {
  return {
    resources: [
      { uri: ORDERS, scopes: ['orders:read', 'orders:write'], lifetime: 300, introspectors: ['orders-api'], servedBy: ['orders-api'] },
      { uri: REPORTS, scopes: ['reports:read'], lifetime: 300, format: 'opaque', introspectors: ['reports-api'] },
      { uri: INVOICES, scopes: ['orders:read'], lifetime: 300, introspectors: ['invoices-api'], servedBy: ['invoices-api'] },
      { uri: ARCHIVE, scopes: ['orders:read'], lifetime: 300 },
      { uri: SHORT, scopes: ['short:read'], lifetime: 1, introspectors: ['orders-api'] },
      { uri: LEGACY, scopes: ['legacy:read'], allowBearer: true },
      { uri: VAULT, scopes: ['orders:read'], format: 'opaque', introspectors: ['reports-api'] },
    ],
    clients: [
      mtlsClient('worker', { resources: { [ORDERS]: ['orders:read', 'orders:write'], [REPORTS]: ['reports:read'], [SHORT]: ['short:read'] } }),
      mtlsClient('orders-api', {
        exchange: { targets: { [INVOICES]: ['orders:read'], [VAULT]: ['orders:read'] }, actFor: ['worker'], acceptBoundSubjectTokens: true },
      }),
      mtlsClient('invoices-api', {
        exchange: { targets: { [ARCHIVE]: ['orders:read'] }, actFor: ['orders-api'], acceptBoundSubjectTokens: true },
      }),
      mtlsClient('idle', { resources: { [ORDERS]: ['orders:read'] } }),
      {
        id: 'reports-api', owner: 'team-reports', purpose: 'ledger tests: introspects reports tokens', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: REPORTS_API_SECRET },
      },
      {
        id: 'stranger', owner: 'team-x', purpose: 'ledger tests: authenticated, entitled to nothing', binding: 'dpop',
        auth: { method: 'client_secret_post', secret: STRANGER_SECRET },
      },
      {
        id: 'dpop-worker', owner: 'team-dpop', purpose: 'ledger tests: DPoP-bound tokens', binding: 'dpop',
        auth: { method: 'client_secret_basic', secret: DPOP_SECRET }, resources: { [ORDERS]: ['orders:read'] },
      },
      {
        id: 'legacy', owner: 'team-legacy', purpose: 'ledger tests: unbound tokens', binding: 'none',
        auth: { method: 'client_secret_post', secret: LEGACY_SECRET }, resources: { [LEGACY]: ['legacy:read'] },
      },
    ],
  };
}

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Requests and endpoints of one running Tether, with one TLS agent per client certificate. */
export class LedgerClient {
  private readonly agents = new Map<string, Agent>();

  constructor(readonly tether: RunningTether) {}

  get introspectionEndpoint(): string {
    return `${this.tether.issuer}/token/introspection`;
  }

  get revocationEndpoint(): string {
    return `${this.tether.issuer}/token/revocation`;
  }

  agent(certificateOf?: string): Agent {
    const key = certificateOf ?? '';
    if (!this.agents.has(key)) this.agents.set(key, this.tether.dispatcherFor(certificateOf));
    return this.agents.get(key)!;
  }

  /** client_credentials by an mTLS client over its own certificate. */
  token(clientId: string, resource: string, form: Record<string, string> = {}): Promise<TokenResponse> {
    return postForm(this.tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: clientId, resource, ...form }, { dispatcher: this.agent(clientId) });
  }

  async accessToken(clientId: string, resource: string): Promise<string> {
    const { status, body } = await this.token(clientId, resource);
    if (status !== 200) throw new Error(`token request failed: ${status} ${JSON.stringify(body)}`);
    return body.access_token as string;
  }

  /** A DPoP-bound token for dpop-worker (RFC 9449 §5). */
  async dpopAccessToken(key?: DpopKey): Promise<{ token: string; key: DpopKey }> {
    const dpopKey = key ?? await createDpopKey();
    const proof = await dpopProof(dpopKey, { htm: 'POST', htu: this.tether.tokenEndpoint });
    const { status, body } = await postForm(this.tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: this.agent(), headers: { authorization: basicAuth('dpop-worker', DPOP_SECRET), dpop: proof },
    });
    if (status !== 200) throw new Error(`DPoP token request failed: ${status} ${JSON.stringify(body)}`);
    return { token: body.access_token as string, key: dpopKey };
  }

  /** RFC 8693 exchange by an mTLS client of a token it received. */
  async exchange(clientId: string, subjectToken: string, resource: string): Promise<string> {
    const { status, body } = await postForm(this.tether.tokenEndpoint, {
      grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, resource,
    }, { dispatcher: this.agent(clientId) });
    if (status !== 200) throw new Error(`exchange failed: ${status} ${JSON.stringify(body)}`);
    return body.access_token as string;
  }

  /** Introspection as an mTLS client. */
  introspectAs(clientId: string, token: string, form: Record<string, string> = {}): Promise<TokenResponse> {
    return postForm(this.introspectionEndpoint, { client_id: clientId, token, ...form }, { dispatcher: this.agent(clientId) });
  }

  /** Introspection as reports-api (client_secret_basic). */
  introspectAsReportsApi(token: string): Promise<TokenResponse> {
    return postForm(this.introspectionEndpoint, { token }, { dispatcher: this.agent(), headers: { authorization: basicAuth('reports-api', REPORTS_API_SECRET) } });
  }

  revokeAs(clientId: string, token: string, form: Record<string, string> = {}): Promise<TokenResponse> {
    return postForm(this.revocationEndpoint, { client_id: clientId, token, ...form }, { dispatcher: this.agent(clientId) });
  }
}

/** A Tether with the ledger test configuration on the run's database, and a client for it. */
export async function startLedgerTether(): Promise<{ tether: RunningTether; client: LedgerClient }> {
  const tether = await startTestTether({ config: ledgerConfig() });
  return { tether, client: new LedgerClient(tether) };
}

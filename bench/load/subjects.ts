import { decodeJwt, decodeProtectedHeader } from 'jose';
import { createDpopSigner, type DpopSigner } from '../lib/dpop_proofs.js';
import { form, FORM_HEADERS, requestOnce } from '../lib/https_client.js';
import type { LoadSpec } from '../lib/load_spec.js';
import type { RunningServer } from './servers.js';

/**
 * The load subjects: what is requested from which server, and how one response of each is checked
 * for what it claims to issue before any timing.
 */
export const ORDERS = 'https://orders.example.test';
const PAYMENTS = 'https://payments.example.test';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REPORTING_CLI_BASIC = `Basic ${Buffer.from('reporting-cli:dev-only-secret-reporting-cli-0001').toString('base64')}`;

/** What the subjects of one load section share and count. */
export interface LoadState {
  connections: number;
  /** Tokens Tether issued outside the load runs (checks, subject tokens), for the ledger reconciliation. */
  ledgerTokensOutsideLoad: number;
  /** Warm-up rate per subject, to size the DPoP proof pool. */
  warmupRates: Map<string, number>;
  dpopSigner?: DpopSigner;
}

export interface LoadSubject {
  name: string;
  label: string;
  server: string;
  /** The load spec for one run (token exchange fetches a fresh subject token each time). */
  spec(server: RunningServer, durationSeconds: number, state: LoadState): Promise<LoadSpec>;
  /** One request outside the clock; throws unless the response is the token this subject claims to issue. */
  check(server: RunningServer, state: LoadState): Promise<string>;
  /** Whether the tokens it gets must each have a ledger record in PostgreSQL. */
  ledger?: boolean;
}

export function clientCredentialsBody(extra: Record<string, string> = {}): string {
  return form({ grant_type: 'client_credentials', client_id: 'orders-worker', resource: ORDERS, scope: 'orders:read', ...extra });
}

function mtlsSpec(server: RunningServer, durationSeconds: number, state: LoadState, client = 'orders-worker', body = clientCredentialsBody()): LoadSpec {
  const files = server.pki.client(client);
  return {
    url: `${server.endpoint.origin}/token`,
    host: server.host,
    method: 'POST',
    headers: FORM_HEADERS,
    body,
    clientCertFile: files.certFile,
    clientKeyFile: files.keyFile,
    connections: state.connections,
    durationSeconds,
  };
}

function expect(condition: unknown, message: string): void {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Requests one client_credentials token with the orders-worker certificate and checks it is bound to it. */
export async function checkMtlsToken(server: RunningServer, expectTyp = 'at+jwt'): Promise<string> {
  const files = server.pki.client('orders-worker');
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token', headers: FORM_HEADERS, body: clientCredentialsBody(), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
  });
  expect(response.status === 200, `${server.name}: status ${response.status} ${response.text}`);
  const token = response.json().access_token as string;
  const header = decodeProtectedHeader(token);
  const claims = decodeJwt(token) as Record<string, unknown>;
  expect(header.alg === 'ES256' && header.typ === expectTyp, `${server.name}: header ${JSON.stringify(header)}`);
  expect(claims.aud === ORDERS || (Array.isArray(claims.aud) && claims.aud[0] === ORDERS), `${server.name}: aud ${JSON.stringify(claims.aud)}`);
  expect((claims.cnf as Record<string, string> | undefined)?.['x5t#S256'] === files.thumbprint, `${server.name}: cnf ${JSON.stringify(claims.cnf)}`);
  return `ES256 ${expectTyp}, aud ${ORDERS}, cnf.x5t#S256 = client certificate`;
}

/**
 * A token from orders-worker for the payments API, which payments-api serves and so may exchange
 * (dev config: servedBy, actFor, acceptBoundSubjectTokens).
 */
async function subjectToken(server: RunningServer, state: LoadState): Promise<string> {
  const files = server.pki.client('orders-worker');
  const body = clientCredentialsBody({ resource: PAYMENTS, scope: 'payments:charge orders:read' });
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token', headers: FORM_HEADERS, body, clientCertFile: files.certFile, clientKeyFile: files.keyFile,
  });
  if (response.status !== 200) throw new Error(`subject token: ${response.status} ${response.text}`);
  state.ledgerTokensOutsideLoad++;
  return response.json().access_token as string;
}

function exchangeBody(subject: string): string {
  return form({
    grant_type: TOKEN_EXCHANGE, client_id: 'payments-api', subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: ORDERS, scope: 'orders:read',
  });
}

function dpopSpec(server: RunningServer, durationSeconds: number, state: LoadState, subject: string): LoadSpec {
  return {
    url: `${server.endpoint.origin}/token`,
    host: server.host,
    method: 'POST',
    headers: { ...FORM_HEADERS, authorization: REPORTING_CLI_BASIC },
    body: form({ grant_type: 'client_credentials', resource: ORDERS, scope: 'orders:read' }),
    connections: state.connections,
    durationSeconds,
    dpopHtu: `https://${server.host}/token`,
    expectedRate: state.warmupRates.get(subject),
  };
}

/** One DPoP-bound token for reporting-cli (client secret), checked to be bound to the proof's key. */
async function checkDpopToken(server: RunningServer, state: LoadState): Promise<string> {
  const signer = (state.dpopSigner ??= createDpopSigner());
  const response = await requestOnce(server.endpoint, {
    method: 'POST', path: '/token',
    headers: { ...FORM_HEADERS, authorization: REPORTING_CLI_BASIC, dpop: signer.proof('POST', `https://${server.host}/token`) },
    body: form({ grant_type: 'client_credentials', resource: ORDERS, scope: 'orders:read' }),
  });
  expect(response.status === 200, `${server.name} dpop: status ${response.status} ${response.text}`);
  const body = response.json();
  const header = decodeProtectedHeader(body.access_token as string);
  const claims = decodeJwt(body.access_token as string) as Record<string, unknown>;
  expect(header.alg === 'ES256' && header.typ === 'at+jwt', `${server.name} dpop: header ${JSON.stringify(header)}`);
  expect(body.token_type === 'DPoP' && (claims.cnf as Record<string, string>)?.jkt === signer.thumbprint, `${server.name} dpop: ${JSON.stringify(claims.cnf)}`);
  return 'ES256 at+jwt, token_type DPoP, cnf.jkt = proof key; a fresh proof per request';
}

export const LOAD_SUBJECTS: readonly LoadSubject[] = [
  {
    name: 'bare',
    label: 'bare oidc-provider 9.13.3 (mTLS-bound JWT, memory adapter, no ledger; plain node)',
    server: 'bare',
    spec: async (server, seconds, state) => mtlsSpec(server, seconds, state),
    check: (server) => checkMtlsToken(server),
  },
  {
    name: 'tether-pg',
    label: 'Tether client_credentials, mTLS-bound JWT, ledger in PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds, state) => mtlsSpec(server, seconds, state),
    check: async (server, state) => { state.ledgerTokensOutsideLoad++; return checkMtlsToken(server); },
  },
  {
    name: 'tether-pglite',
    label: 'Tether client_credentials, mTLS-bound JWT, embedded PGlite',
    server: 'tether-pglite',
    spec: async (server, seconds, state) => mtlsSpec(server, seconds, state),
    check: (server) => checkMtlsToken(server),
  },
  {
    name: 'bare-dpop',
    label: 'bare oidc-provider 9.13.3 (DPoP-bound JWT, client secret, proofs replay-checked in memory, no ledger; plain node)',
    server: 'bare',
    spec: async (server, seconds, state) => dpopSpec(server, seconds, state, 'bare-dpop'),
    check: (server, state) => checkDpopToken(server, state),
  },
  {
    name: 'tether-pg-dpop',
    label: 'Tether client_credentials, DPoP-bound JWT (client secret), PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds, state) => dpopSpec(server, seconds, state, 'tether-pg-dpop'),
    check: async (server, state) => {
      state.ledgerTokensOutsideLoad++;
      return `${await checkDpopToken(server, state)} (replay-checked in PostgreSQL)`;
    },
  },
  {
    name: 'tether-pg-exchange',
    label: 'Tether token exchange (RFC 8693), mTLS-bound, PostgreSQL',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds, state) => mtlsSpec(server, seconds, state, 'payments-api', exchangeBody(await subjectToken(server, state))),
    check: async (server, state) => {
      const files = server.pki.client('payments-api');
      const response = await requestOnce(server.endpoint, {
        method: 'POST', path: '/token', headers: FORM_HEADERS, body: exchangeBody(await subjectToken(server, state)), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
      });
      expect(response.status === 200, `exchange: status ${response.status} ${response.text}`);
      const claims = decodeJwt(response.json().access_token as string) as Record<string, unknown>;
      expect((claims.act as Record<string, string>)?.sub === 'payments-api' && claims.sub === 'orders-worker', `exchange: ${JSON.stringify(claims)}`);
      expect((claims.cnf as Record<string, string>)?.['x5t#S256'] === files.thumbprint, 'exchange: cnf');
      state.ledgerTokensOutsideLoad++;
      return 'sub orders-worker, act.sub payments-api, cnf.x5t#S256 = payments-api certificate';
    },
  },
  {
    name: 'mock',
    label: 'oauth2-mock-server 9.3.0 (plain client_credentials JWT, ES256; plain node)',
    server: 'mock',
    spec: async (server, seconds, state) => ({
      ...mtlsSpec(server, seconds, state),
      body: form({ grant_type: 'client_credentials', client_id: 'orders-worker', scope: 'orders:read', aud: ORDERS }),
    }),
    check: async (server) => {
      const response = await requestOnce(server.endpoint, {
        method: 'POST', path: '/token', headers: FORM_HEADERS, body: form({ grant_type: 'client_credentials', client_id: 'orders-worker', scope: 'orders:read', aud: ORDERS }),
      });
      expect(response.status === 200, `mock: status ${response.status} ${response.text}`);
      expect(decodeProtectedHeader(response.json().access_token as string).alg === 'ES256', 'mock: alg');
      return 'ES256 JWT, no client authentication, no binding, no record';
    },
  },
  {
    name: 'tether-pg-newconn',
    label: 'Tether client_credentials (as tether-pg), new TLS connection with client certificate per request',
    server: 'tether-pg',
    ledger: true,
    spec: async (server, seconds, state) => ({ ...mtlsSpec(server, seconds, state), newConnectionPerRequest: true }),
    check: async () => 'as tether-pg',
  },
];

export interface PairDefinition {
  pair: string;
  subject: string;
  baseline: string;
  note: string;
}

export const LOAD_PAIRS: readonly PairDefinition[] = [
  { pair: '1 issuance', subject: 'tether-pg', baseline: 'bare', note: 'same token, same TLS transport; Tether also records it in PostgreSQL' },
  { pair: '1 issuance (PGlite)', subject: 'tether-pglite', baseline: 'bare', note: 'embedded database, same process' },
  { pair: '1 issuance (DPoP)', subject: 'tether-pg-dpop', baseline: 'bare-dpop', note: 'DPoP proof verified and replay-checked per request' },
  { pair: '2 vs mock', subject: 'tether-pg', baseline: 'mock', note: 'the mock checks nothing and records nothing' },
  { pair: '3 token exchange', subject: 'tether-pg-exchange', baseline: 'tether-pg', note: 'subject token verified and its lineage read from the ledger' },
  { pair: '6 handshake', subject: 'tether-pg-newconn', baseline: 'tether-pg', note: 'full TLS handshake with client certificate per request vs keep-alive' },
];

/**
 * With `--compare <ref>`: each chosen Tether subject again, served by `tether dev` from revision
 * `ref` (server `<server>@<ref>`), paired with the working tree's: "after ÷ before" in one run.
 */
export function revisionSubjects(subjects: readonly LoadSubject[], ref: string): LoadSubject[] {
  return subjects
    .filter((subject) => subject.server.startsWith('tether-') && subject.name !== 'tether-pg-newconn')
    .map((subject) => ({ ...subject, name: `${subject.name}@${ref}`, server: `${subject.server}@${ref}`, label: `${subject.label}, at ${ref}`, ledger: false }));
}

export function revisionPairs(subjects: readonly LoadSubject[], ref: string): PairDefinition[] {
  return revisionSubjects(subjects, ref).map((variant) => {
    const subject = variant.name.slice(0, -(ref.length + 1));
    return { pair: `after ÷ ${ref}`, subject, baseline: variant.name, note: `the working tree against revision ${ref}, same subject` };
  });
}

// Attacks on the forwarded client certificate at the token endpoint (issue 12, items 2 and 3): a
// client-supplied copy of the header in front of the proxy's, and a trusted hop that forwards none.
import { X509Certificate } from 'node:crypto';
import { decodeJwt } from 'jose';
import { Agent, request } from 'undici';
import { issueClientCertificate, type IssuedClientCertificate } from '../../src/keys/dev_pki.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { startTestTether } from '../support/tether.js';

const escapedPem = (pem: string) => encodeURIComponent(pem);
const rfc9440 = (pem: string) => `:${new X509Certificate(pem).raw.toString('base64')}:`;

const SECRET = 'mtls-secret-client-0123456789abcdef';
const secretMtlsClient = {
  id: 'secret-mtls', owner: 'team-d', purpose: 'tests', binding: 'mtls',
  auth: { method: 'client_secret_post', secret: SECRET },
  resources: { [ORDERS]: ['orders:read'] },
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
  requestId: string;
}

/**
 * POSTs a client_credentials request with `headers` as a flat [name, value, name, value…] list:
 * undici sends every pair as its own header line, so a name may repeat as an attacker sends it.
 */
async function tokenRequest(tether: RunningTether, dispatcher: Agent, form: Record<string, string>, headers: string[]): Promise<Answer> {
  const response = await request(tether.tokenEndpoint, {
    method: 'POST',
    dispatcher,
    headers: ['content-type', 'application/x-www-form-urlencoded', 'accept', 'application/json', ...headers],
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: ORDERS, ...form }).toString(),
  });
  const body = (await response.body.json()) as Record<string, unknown>;
  return { status: response.statusCode, body, requestId: String(response.headers['x-request-id']) };
}

async function eventsOf(tether: RunningTether, requestId: string) {
  // An anonymous refusal may have been counted rather than written: end the window first
  // (ledger/rejection_aggregator.ts); the counted row carries the last request's id.
  await tether.app.unauthenticatedRejections.flush();
  return tether.database.knex('ledger_events').where({ request_id: requestId }).select('type', 'client_id', 'details');
}

async function issuedCount(tether: RunningTether): Promise<number> {
  const [row] = await tether.database.knex('ledger_events').where({ type: 'token.issued' }).count({ n: '*' });
  return Number(row!.n);
}

const MALFORMED = { error: 'invalid_request', error_description: 'malformed client certificate header' };

async function expectMalformedHeaderRefusal(tether: RunningTether, answer: Answer, issuedBefore: number): Promise<void> {
  expect(answer.status).toBe(400);
  expect(answer.body).toEqual(MALFORMED);
  const events = await eventsOf(tether, answer.requestId);
  expect(events).toEqual([
    expect.objectContaining({
      type: 'request.rejected',
      details: expect.objectContaining({ route: 'token', status: 400, error: 'invalid_request', reason: 'malformed client certificate header' }),
    }),
  ]);
  expect(await issuedCount(tether)).toBe(issuedBefore);
}

describe('RFC 9440 §4: the forwarded certificate header occurs once and holds one certificate (nginx X-SSL-Client-Cert)', () => {
  let tether: RunningTether;
  // The "proxy" connects from 127.0.0.1 without a client certificate of its own.
  let proxy: Agent;
  let attacker: IssuedClientCertificate;

  beforeAll(async () => {
    tether = await startTestTether({ config: { ...testConfig(), trustedProxies: ['127.0.0.1'], clientCertHeader: 'x-ssl-client-cert' } });
    proxy = tether.dispatcherFor();
    attacker = await issueClientCertificate(tether.pki, 'attacker', { selfSigned: true });
  });

  afterAll(async () => {
    await tether?.close();
  });

  // Only the victim's public certificate is known to the attacker.
  const victimPem = () => tether.pki.clients['mtls-client']!.certificatePem;
  const asVictim = { client_id: 'mtls-client' };

  test('control: one header with the client certificate authenticates and binds', async () => {
    const answer = await tokenRequest(tether, proxy, asVictim, ['x-ssl-client-cert', escapedPem(victimPem())]);
    expect(answer.status).toBe(200);
    expect(decodeJwt(answer.body.access_token as string).cnf).toEqual({ 'x5t#S256': tether.pki.clients['mtls-client']!.thumbprint });
  });

  test.each([
    ['the client’s copy (victim’s certificate) before the proxy’s empty value', () => ['X-SSL-Client-Cert', escapedPem(victimPem()), 'x-ssl-client-cert', '']],
    ['the client’s copy before the proxy’s value (the attacker’s real certificate)', () => ['x-ssl-client-cert', escapedPem(victimPem()), 'X-SSL-Client-Cert', escapedPem(attacker.certificatePem)]],
    ['the proxy’s value before the client’s copy', () => ['x-ssl-client-cert', escapedPem(attacker.certificatePem), 'x-ssl-client-cert', escapedPem(victimPem())]],
    ['two identical copies', () => ['x-ssl-client-cert', escapedPem(victimPem()), 'X-Ssl-Client-Cert', escapedPem(victimPem())]],
    ['one value holding two joined certificates', () => ['x-ssl-client-cert', `${escapedPem(victimPem())}, ${escapedPem(attacker.certificatePem)}`]],
    ['one value with a trailing ", " (a joined empty value)', () => ['x-ssl-client-cert', `${escapedPem(victimPem())}, `]],
    ['a certificate followed by a chain', () => ['x-ssl-client-cert', escapedPem(victimPem() + tether.pki.ca.certificatePem)]],
  ])('%s → 400 invalid_request, a rejection in the ledger, no token', async (_label, headers) => {
    const issuedBefore = await issuedCount(tether);
    const answer = await tokenRequest(tether, proxy, asVictim, headers());
    await expectMalformedHeaderRefusal(tether, answer, issuedBefore);
  });
});

describe('RFC 9440 §4 with the RFC 9440 Client-Cert header', () => {
  let tether: RunningTether;
  let proxy: Agent;

  beforeAll(async () => {
    tether = await startTestTether({ config: { ...testConfig(), trustedProxies: ['127.0.0.1'] } });
    proxy = tether.dispatcherFor();
  });

  afterAll(async () => {
    await tether?.close();
  });

  test.each([
    ['the victim’s certificate, then an empty value', () => ['Client-Cert', rfc9440(tether.pki.clients['mtls-client']!.certificatePem), 'client-cert', '']],
    ['an empty value, then the victim’s certificate', () => ['client-cert', '', 'Client-Cert', rfc9440(tether.pki.clients['mtls-client']!.certificatePem)]],
  ])('two Client-Cert headers (%s) → 400 invalid_request, no token', async (_label, headers) => {
    const issuedBefore = await issuedCount(tether);
    const answer = await tokenRequest(tether, proxy, { client_id: 'mtls-client' }, headers());
    await expectMalformedHeaderRefusal(tether, answer, issuedBefore);
  });
});

describe('RFC 8705 §3: from a trusted proxy the header is the only source of the client certificate', () => {
  let tether: RunningTether;
  // The proxy presents its own TLS client certificate to Tether (a CA-issued one, here with the
  // subject of a registered client, the worst case).
  let proxyWithCertificate: Agent;
  let direct: RunningTether;

  beforeAll(async () => {
    [tether, direct] = await Promise.all([
      startTestTether({ config: { ...testConfig({ clients: [secretMtlsClient] }), trustedProxies: ['127.0.0.1'] } }),
      startTestTether({ config: { ...testConfig({ clients: [secretMtlsClient] }), trustedProxies: ['10.0.0.0/8'] } }),
    ]);
    proxyWithCertificate = tether.dispatcherFor('mtls-client');
  });

  afterAll(async () => {
    await Promise.all([tether?.close(), direct?.close()]);
  });

  test.each([
    ['no header', []],
    ['an empty header', ['client-cert', '']],
  ])('tls_client_auth through the proxy with %s → 401 invalid_client, not the proxy’s certificate', async (_label, headers) => {
    const issuedBefore = await issuedCount(tether);
    const answer = await tokenRequest(tether, proxyWithCertificate, { client_id: 'mtls-client' }, headers as string[]);
    expect(answer.status).toBe(401);
    expect(answer.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(await eventsOf(tether, answer.requestId)).toEqual([
      expect.objectContaining({ type: 'request.rejected', details: expect.objectContaining({ route: 'token', status: 401, error: 'invalid_client' }) }),
    ]);
    expect(await issuedCount(tether)).toBe(issuedBefore);
  });

  test('a secret-authenticated mTLS-bound client through the proxy without a header gets no token bound to the proxy', async () => {
    const issuedBefore = await issuedCount(tether);
    const answer = await tokenRequest(tether, proxyWithCertificate, { client_id: 'secret-mtls', client_secret: SECRET }, []);
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ error: 'invalid_request', error_description: 'a TLS client certificate is required: this client\'s tokens are certificate-bound' });
    expect(await issuedCount(tether)).toBe(issuedBefore);
  });

  test('the forwarded certificate still wins over the proxy’s own', async () => {
    const forwarded = tether.pki.clients['default-client']!;
    const answer = await tokenRequest(tether, proxyWithCertificate, { client_id: 'default-client' }, ['client-cert', rfc9440(forwarded.certificatePem)]);
    expect(answer.status).toBe(200);
    expect(decodeJwt(answer.body.access_token as string).cnf).toEqual({ 'x5t#S256': forwarded.thumbprint });
  });

  test('control: a peer that is not a trusted proxy authenticates with its own TLS certificate', async () => {
    const answer = await tokenRequest(direct, direct.dispatcherFor('mtls-client'), { client_id: 'mtls-client' }, []);
    expect(answer.status).toBe(200);
    expect(decodeJwt(answer.body.access_token as string).cnf).toEqual({ 'x5t#S256': direct.pki.clients['mtls-client']!.thumbprint });
  });
});

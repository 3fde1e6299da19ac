import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { fetch } from 'undici';
import { knexLogTo, withoutCredentials } from '../../src/observability/library_logs.js';
import { openDatabase } from '../../src/storage/database.js';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, LEGACY_SECRET, LedgerClient, ORDERS, REPORTS, REPORTS_API_SECRET, STRANGER_SECRET, ledgerConfig } from '../ledger/ledger_config.js';
import { rawRequest } from '../support/raw_request.js';
import { basicAuth, postForm, startTestTether } from '../support/tether.js';
import { captureLog, type CapturedLog } from './log_capture.js';

/**
 * The log (docs/operations.md#logs): one JSON access line per request, and nothing secret in any
 * line. Every credential a client can send is sent, as a marker, to every endpoint; the captured
 * log (at trace, the most talkative level) must contain none of them, nor any real token, proof or
 * configured secret.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REFRESH_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:refresh_token';

const marker = (name: string) => `MARK${name}${randomBytes(12).toString('hex')}`;
const markers = {
  clientSecret: marker('clientsecret'),
  clientAssertion: marker('assertion'),
  dpopProof: marker('dpop'),
  accessToken: marker('access'),
  refreshToken: marker('refresh'),
  subjectToken: marker('subject'),
  actorToken: marker('actor'),
  encryptionSecret: marker('encryption'),
  authorization: marker('authorization'),
  cookie: marker('cookie'),
  querySecret: marker('query'),
  databasePassword: marker('dbpassword'),
};

let log: CapturedLog;
let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  log = captureLog();
  const { publicKey } = await generateKeyPair('ES256');
  const config = ledgerConfig() as { clients: Record<string, unknown>[] };
  config.clients.push({
    id: 'jwt-client', owner: 'team-jwt', purpose: 'private_key_jwt', binding: 'dpop',
    auth: { method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] } },
    resources: { [ORDERS]: ['orders:read'] },
  });
  tether = await startTestTether({
    config: { ...config, signing: { encryptionSecret: markers.encryptionSecret }, trustedProxies: ['127.0.0.2'], metrics: { listener: 'http' } },
    http: true,
    logger: log.logger,
  });
  client = new LedgerClient(tether);
});

afterAll(async () => {
  await tether?.close();
});

/** The one access line of a response (by the X-Request-Id it was answered with). */
function accessLineOf(response: { headers: { get(name: string): string | null } }): Record<string, unknown> {
  const requestId = response.headers.get('x-request-id')!;
  const lines = log.accessLinesOf(requestId);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

describe('the access line', () => {
  test('an issued token: request id, method, path, route, status, duration, client, grant, peer, user agent', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'worker', resource: ORDERS }, {
      dispatcher: client.agent('worker'), headers: { 'user-agent': 'access-log-test/1.0', 'x-request-id': 'access-log-issued-1' },
    });
    expect(response.status).toBe(200);
    const line = accessLineOf(response);
    expect(line).toMatchObject({
      level: 30, msg: 'request', service: 'tether', requestId: 'access-log-issued-1', method: 'POST', path: '/token', route: 'token', status: 200,
      clientId: 'worker', grant: 'client_credentials', peer: '127.0.0.1', userAgent: 'access-log-test/1.0',
    });
    expect(typeof line.durationMs).toBe('number');
    expect(line).not.toHaveProperty('error');
    expect(line).not.toHaveProperty('forwardedFor');
  });

  test('a refused client authentication is at info with the client and the OAuth error', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: client.agent(), headers: { authorization: basicAuth('dpop-worker', 'not-the-secret-0123456789') },
    });
    expect(response.status).toBe(401);
    expect(accessLineOf(response)).toMatchObject({ level: 30, status: 401, clientId: 'dpop-worker', grant: 'client_credentials', error: 'invalid_client' });
  });

  test('an unregistered client id is logged as "unknown", never as sent', async () => {
    const claimed = `made-up-${randomBytes(6).toString('hex')}`;
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: claimed, client_secret: 'x', resource: ORDERS }, { dispatcher: client.agent() });
    expect(response.status).toBe(401);
    expect(accessLineOf(response)).toMatchObject({ clientId: 'unknown', error: 'invalid_client' });
    expect(log.text()).not.toContain(claimed);
  });

  test('one line for each request, whichever middleware answered it (health, 404, 413, 421, discovery, metrics)', async () => {
    const responses = [
      await fetch(`${tether.httpOrigin}/healthz`),
      await fetch(`${tether.httpOrigin}/readyz`),
      await fetch(`${tether.httpOrigin}/metrics`),
      await fetch(`${tether.origin}/no-such-path`, { dispatcher: client.agent() }),
      await fetch(`${tether.issuer}/.well-known/oauth-authorization-server`, { dispatcher: client.agent() }),
      await fetch(tether.tokenEndpoint, { method: 'POST', body: 'x'.repeat(40_000), headers: { 'content-type': 'application/x-www-form-urlencoded' }, dispatcher: client.agent() }),
    ];
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 404, 200, 413]);
    for (const response of responses) accessLineOf(response);
    const misdirected = await rawRequest({ connectTo: tether.httpOrigin!, target: '/token', method: 'POST', headers: { host: 'evil.example', 'x-request-id': 'access-log-421' }, form: { grant_type: 'client_credentials' } });
    expect(misdirected.status).toBe(421);
    expect(log.accessLinesOf('access-log-421')).toEqual([expect.objectContaining({ status: 421, error: 'invalid_request', path: '/token' })]);
  });

  test('X-Forwarded-For is believed only from a trusted hop', async () => {
    const [, port] = /:(\d+)$/.exec(tether.httpOrigin!)!;
    const host = `127.0.0.1:${port}`;
    await rawRequest({ connectTo: tether.httpOrigin!, target: '/jwks', headers: { host, 'x-forwarded-for': '198.51.100.7', 'x-request-id': 'xff-untrusted' }, localAddress: '127.0.0.1' });
    await rawRequest({ connectTo: tether.httpOrigin!, target: '/jwks', headers: { host, 'x-forwarded-for': '198.51.100.7', 'x-request-id': 'xff-trusted' }, localAddress: '127.0.0.2' });
    const [untrusted] = log.accessLinesOf('xff-untrusted');
    const [trusted] = log.accessLinesOf('xff-trusted');
    expect(untrusted).toMatchObject({ status: 200, peer: '127.0.0.1' });
    expect(untrusted).not.toHaveProperty('forwardedFor');
    expect(trusted).toMatchObject({ status: 200, peer: '127.0.0.2', forwardedFor: '198.51.100.7' });
  });

  test('the query string is never logged', async () => {
    const response = await fetch(`${tether.tokenEndpoint}?client_secret=${markers.querySecret}`, { method: 'POST', dispatcher: client.agent() });
    expect(accessLineOf(response)).toMatchObject({ path: '/token' });
  });
});

describe('nothing secret in any line', () => {
  test('marker credentials through every endpoint, and real tokens, proofs and secrets, appear in no line', async () => {
    const anonymous = client.agent();
    const auth = { authorization: `Bearer ${markers.authorization}`, cookie: `session=${markers.cookie}` };
    const assertion = `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify({ iss: 'jwt-client', m: markers.clientAssertion })).toString('base64url')}.${markers.clientAssertion}`;

    // Real credentials whose values must not appear either.
    const access = await client.accessToken('worker', ORDERS);
    const opaque = await client.accessToken('worker', REPORTS);
    const dpopKey = await createDpopKey();
    const realProof = await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint });
    const dpopToken = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: anonymous, headers: { authorization: basicAuth('dpop-worker', DPOP_SECRET), dpop: realProof },
    });
    expect(dpopToken.status).toBe(200);
    // The same proof again: a replay, refused.
    expect((await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: anonymous, headers: { authorization: basicAuth('dpop-worker', DPOP_SECRET), dpop: realProof },
    })).status).toBe(400);
    const exchanged = await client.exchange('orders-api', access, 'https://invoices.ledger.test');
    const { privateKey: wrongKey } = await generateKeyPair('ES256');
    const realAssertion = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer('jwt-client').setSubject('jwt-client')
      .setAudience(tether.issuer).setJti(randomBytes(8).toString('hex')).setIssuedAt().setExpirationTime('1m').sign(wrongKey);

    const tokenForms: [Record<string, string>, Record<string, string>][] = [
      [{ grant_type: 'client_credentials', resource: ORDERS }, { authorization: basicAuth('dpop-worker', markers.clientSecret) }],
      [{ grant_type: 'client_credentials', resource: ORDERS }, { authorization: basicAuth(markers.clientSecret, markers.clientSecret) }],
      [{ grant_type: 'client_credentials', client_id: 'legacy', client_secret: markers.clientSecret, resource: 'https://legacy.ledger.test' }, {}],
      [{ grant_type: 'client_credentials', client_id: 'legacy', client_secret: LEGACY_SECRET, resource: 'https://legacy.ledger.test' }, {}],
      [{ grant_type: 'client_credentials', client_id: 'stranger', client_secret: STRANGER_SECRET, resource: ORDERS }, {}],
      [{ grant_type: 'client_credentials', resource: ORDERS, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }, {}],
      [{ grant_type: 'client_credentials', resource: ORDERS, client_id: 'jwt-client', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: realAssertion }, {}],
      [{ grant_type: 'client_credentials', resource: ORDERS }, { authorization: basicAuth('dpop-worker', DPOP_SECRET), dpop: markers.dpopProof }],
      [{ grant_type: TOKEN_EXCHANGE, client_id: 'orders-api', subject_token: markers.subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, actor_token: markers.actorToken, actor_token_type: ACCESS_TOKEN_TYPE, resource: ORDERS }, {}],
      [{ grant_type: TOKEN_EXCHANGE, client_id: 'orders-api', subject_token: markers.refreshToken, subject_token_type: REFRESH_TOKEN_TYPE, resource: ORDERS }, {}],
      [{ grant_type: TOKEN_EXCHANGE, client_id: 'orders-api', subject_token: opaque, subject_token_type: ACCESS_TOKEN_TYPE, resource: ORDERS }, {}],
      [{ grant_type: 'refresh_token', refresh_token: markers.refreshToken, client_id: 'worker' }, {}],
    ];
    for (const [form, headers] of tokenForms) {
      const response = await postForm(tether.tokenEndpoint, form, { dispatcher: client.agent(form.client_id === 'orders-api' ? 'orders-api' : undefined), headers: { cookie: auth.cookie, ...headers } });
      expect(response.status).toBeLessThan(500);
    }
    for (const token of [markers.accessToken, access, opaque, exchanged, dpopToken.body.access_token as string]) {
      expect((await client.introspectAsReportsApi(token)).status).toBe(200);
      expect((await postForm(client.introspectionEndpoint, { token }, { dispatcher: anonymous, headers: { authorization: basicAuth('reports-api', markers.clientSecret) } })).status).toBe(401);
    }
    expect((await client.revokeAs('worker', markers.refreshToken, { token_type_hint: 'refresh_token' })).status).toBe(200);
    expect((await client.revokeAs('worker', markers.accessToken)).status).toBe(200);
    expect((await postForm(client.revocationEndpoint, { token: access }, { dispatcher: anonymous, headers: { authorization: basicAuth('reports-api', REPORTS_API_SECRET) } })).status).toBeLessThan(500);
    for (const url of [tether.jwksUri, `${tether.issuer}/.well-known/oauth-authorization-server`, `${tether.issuer}/.well-known/openid-configuration`, `${tether.origin}/auth`, `${tether.origin}/nowhere`]) {
      await fetch(url, { dispatcher: anonymous, headers: { ...auth, dpop: markers.dpopProof } });
    }
    for (const path of ['/healthz', '/readyz', '/metrics', '/token', '/nowhere']) {
      await fetch(`${tether.httpOrigin}${path}`, { method: path === '/token' ? 'POST' : 'GET', headers: { ...auth, dpop: markers.dpopProof } });
    }

    const text = log.text();
    expect(log.lines().filter((line) => line.msg === 'request').length).toBeGreaterThan(40);
    const secrets = {
      ...markers,
      access, opaque, exchanged, dpopAccessToken: dpopToken.body.access_token as string, realProof, realAssertion,
      DPOP_SECRET, LEGACY_SECRET, STRANGER_SECRET, REPORTS_API_SECRET,
      // HTTP Basic carries the secret base64-encoded: the header values themselves must not appear either.
      basicWithMarker: basicAuth('dpop-worker', markers.clientSecret).slice('Basic '.length),
      basicWithRealSecret: basicAuth('dpop-worker', DPOP_SECRET).slice('Basic '.length),
      basicOfReportsApi: basicAuth('reports-api', REPORTS_API_SECRET).slice('Basic '.length),
    };
    const found = Object.entries(secrets).filter(([, value]) => text.includes(value) || text.includes(value.slice(0, 24)));
    expect(found.map(([name]) => name)).toEqual([]);
  });

  test('knex messages are JSON lines of the logger, without the database password of the URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const url = `postgres://tether:${markers.databasePassword}@127.0.0.1:${port}/tether`;
    const database = await openDatabase({ url, log: knexLogTo(log.logger), timeouts: { statementTimeout: 500, acquireTimeout: 300, connectTimeout: 200 } });
    try {
      await expect(database.knex.raw('select 1')).rejects.toThrow();
      // What knex passes on is not up to Tether; the routing is: a message naming the URL loses its password.
      knexLogTo(log.logger).warn(`could not connect to ${url}`);
    } finally {
      await database.close();
    }
    const knexLines = log.lines().filter((line) => line.component === 'knex');
    // knex's own warning about the refused connection, routed through the logger.
    expect(knexLines).toContainEqual(expect.objectContaining({ level: 40, service: 'tether', msg: expect.stringMatching(/^Acquire connection error: .*ECONNREFUSED/) }));
    expect(knexLines.at(-1)).toMatchObject({ level: 40, msg: `could not connect to postgres://tether:***@127.0.0.1:${port}/tether` });
    expect(log.text()).not.toContain(markers.databasePassword);
  });

  test('withoutCredentials removes the password of any URL and leaves the rest', () => {
    expect(withoutCredentials('a postgresql://u:p%40ss@db:5432/x and redis://:secret@r/0, http://plain.example/')).toBe('a postgresql://u:***@db:5432/x and redis://:***@r/0, http://plain.example/');
  });
});

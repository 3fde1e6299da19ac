import { request, type Agent } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { discoverWithOauth4webapi, startTestTether } from '../support/tether.js';
import { rowCounts } from '../storage/table_dump.js';

/**
 * Issue 12 item 6: only the endpoints Tether uses are served — discovery, jwks, token,
 * introspection, revocation. oidc-provider's end-user and registration endpoints answer 404 and
 * write nothing: before, 100 anonymous `GET /session/end` stored 100 sessions with a 14-day life.
 */

let tether: RunningTether;
let anonymous: Agent;
let mtls: Agent;

beforeAll(async () => {
  tether = await startTestTether({ config: testConfig() });
  anonymous = tether.dispatcherFor();
  mtls = tether.dispatcherFor('mtls-client');
});

afterAll(async () => {
  await tether?.close();
});

async function send(method: string, path: string, dispatcher = anonymous): Promise<{ status: number; text: string }> {
  const response = await request(`${tether.issuer}${path}`, {
    method: method as 'GET',
    body: method === 'GET' || method === 'HEAD' ? undefined : 'client_id=mtls-client&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fx.example',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    dispatcher,
  });
  return { status: response.statusCode, text: await response.body.text() };
}

const UNUSED: [string, string][] = [
  ['GET', '/session/end'],
  ['POST', '/session/end'],
  ['POST', '/session/end/confirm'],
  ['GET', '/session/end/success'],
  ['GET', '/auth'],
  ['POST', '/auth'],
  ['GET', '/auth/some-uid'],
  ['POST', '/request'],
  ['GET', '/me'],
  ['POST', '/me'],
  ['POST', '/reg'],
  ['GET', '/reg/mtls-client'],
  ['POST', '/device/auth'],
  ['GET', '/device'],
  ['POST', '/backchannel'],
  ['GET', '/interaction/some-uid'],
  ['POST', '/challenge'],
  ['POST', '/credential'],
  ['GET', '/.well-known/openid-credential-issuer'],
  ['GET', '/token/../auth'],
];

describe('endpoints Tether does not use', () => {
  test.each(UNUSED)('%s %s → 404, nothing written to any table', async (method, path) => {
    const before = await rowCounts(tether.database.knex);
    for (const dispatcher of [anonymous, mtls]) {
      expect(await send(method, path, dispatcher)).toEqual({ status: 404, text: 'Not Found' });
    }
    expect(await rowCounts(tether.database.knex)).toEqual(before);
  });

  test('100 anonymous GET /session/end: 100 × 404, no session and no row anywhere', async () => {
    const before = await rowCounts(tether.database.knex);
    for (let n = 0; n < 100; n += 1) expect((await send('GET', '/session/end')).status).toBe(404);
    expect(await rowCounts(tether.database.knex)).toEqual(before);
    expect(await tether.database.knex('oidc_payloads').where({ model: 'Session' })).toHaveLength(0);
  });
});

describe('endpoints Tether uses', () => {
  test('discovery advertises only served endpoints', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const { status, text } = await send('GET', path);
      expect(status).toBe(200);
      const metadata = JSON.parse(text) as Record<string, unknown>;
      const endpoints = Object.keys(metadata).filter((name) => /_endpoint$|_iframe$/.test(name)).sort();
      expect(endpoints).toEqual(['introspection_endpoint', 'revocation_endpoint', 'token_endpoint']);
      expect(metadata.jwks_uri).toBe(`${tether.issuer}/jwks`);
    }
    // A real client library still discovers and uses it.
    const server = await discoverWithOauth4webapi(tether, anonymous);
    expect(server.token_endpoint).toBe(tether.tokenEndpoint);
    expect(server.authorization_endpoint).toBeUndefined();
  });

  test.each([
    ['GET', '/jwks', 200],
    ['GET', '/.well-known/oauth-authorization-server', 200],
    ['GET', '/.well-known/openid-configuration', 200],
  ])('%s %s → %i', async (method, path, status) => {
    expect((await send(method, path)).status).toBe(status);
  });

  test('token, introspection and revocation still answer', async () => {
    const token = await request(tether.tokenEndpoint, {
      method: 'POST', dispatcher: mtls, headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=mtls-client&resource=${encodeURIComponent(ORDERS)}`,
    });
    expect(token.statusCode).toBe(200);
    const { access_token: accessToken } = await token.body.json() as { access_token: string };
    const revocation = await request(tether.revocationEndpoint, {
      method: 'POST', dispatcher: mtls, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `client_id=mtls-client&token=${accessToken}`,
    });
    expect(revocation.statusCode).toBe(200);
    await revocation.body.text();
    const introspection = await request(tether.introspectionEndpoint, {
      method: 'POST', dispatcher: mtls, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `client_id=mtls-client&token=${accessToken}`,
    });
    expect(await introspection.body.json()).toEqual({ active: false });
  });
});

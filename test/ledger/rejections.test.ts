import { decodeJwt } from 'jose';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { basicAuth, postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { DPOP_SECRET, INVOICES, LedgerClient, ORDERS, REPORTS, ledgerConfig, startLedgerTether } from './ledger_config.js';

/**
 * Every refused token, introspection and revocation request leaves a `request.rejected` event: the
 * public error the client saw, and the private reason it did not.
 */

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

async function rejectionOf(response: TokenResponse) {
  const requestId = response.headers.get('x-request-id');
  const events = await tether.database.knex('ledger_events').where({ request_id: requestId });
  expect(events).toHaveLength(1);
  expect(events[0].type).toBe('request.rejected');
  return events[0];
}

const tokenRequest = (clientId: string, form: Record<string, string | string[]>) =>
  postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: clientId, ...form }, { dispatcher: client.agent(clientId) });

describe('token endpoint rejections', () => {
  test.each([
    ['no resource', 'invalid_target', {}, 'the resource parameter is required', 'no resource requested and the client has no default resource'],
    ['two resources', 'invalid_target', { resource: [ORDERS, REPORTS] }, 'exactly one resource parameter is required', '2 resource values requested'],
    ['an unknown resource', 'invalid_target', { resource: 'https://nowhere.ledger.test' }, 'the requested resource is not registered at this server', 'unknown resource "https://nowhere.ledger.test"'],
    ['a resource not permitted', 'invalid_target', { resource: INVOICES }, 'this client may not obtain tokens for the requested resource', 'resource https://invoices.ledger.test is not permitted for client worker'],
    ['a scope not granted', 'invalid_scope', { resource: ORDERS, scope: 'orders:read orders:admin' }, 'requested scope is not allowed', 'scopes not granted: orders:admin'],
  ])('%s → 400 %s, reason recorded', async (_label, error, form, description, reason) => {
    const response = await tokenRequest('worker', form as Record<string, string | string[]>);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error, error_description: description });
    const event = await rejectionOf(response);
    expect(event).toMatchObject({
      client_id: 'worker',
      details: { route: 'token', status: 400, error, error_description: description, reason, grant_type: 'client_credentials' },
    });
    expect(event.instance_id).toBe(tether.app.instanceId);
    expect(event.source_address).toBe('127.0.0.1');
  });

  test('the requested resource and scope are recorded with the rejection', async () => {
    const response = await tokenRequest('worker', { resource: ORDERS, scope: 'orders:admin' });
    expect(await rejectionOf(response)).toMatchObject({ resource: ORDERS, scope: 'orders:admin' });
  });

  test('an mTLS client without its certificate → 401 invalid_client; the private reason is recorded', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'worker', resource: ORDERS }, { dispatcher: client.agent() });
    expect(response.status).toBe(401);
    expect(response.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(await rejectionOf(response)).toMatchObject({ client_id: 'worker', details: { error: 'invalid_client', reason: 'client certificate was not provided' } });
  });

  test('a wrong secret → 401 invalid_client, reason "invalid secret provided"', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: client.agent(), headers: { authorization: basicAuth('dpop-worker', `${DPOP_SECRET}x`) },
    });
    expect(response.status).toBe(401);
    expect(await rejectionOf(response)).toMatchObject({ client_id: 'dpop-worker', details: { error: 'invalid_client', reason: 'invalid secret provided' } });
  });

  test('an unsupported grant type → 400 unsupported_grant_type, recorded', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'password', client_id: 'worker', username: 'u', password: 'p' }, { dispatcher: client.agent('worker') });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('unsupported_grant_type');
    expect(await rejectionOf(response)).toMatchObject({ details: { route: 'token', error: 'unsupported_grant_type', grant_type: 'password' } });
  });

  test('a DPoP client without a proof → 400 invalid_request, reason "no DPoP header"', async () => {
    const response = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: client.agent(), headers: { authorization: basicAuth('dpop-worker', DPOP_SECRET) },
    });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: 'invalid_request', error_description: 'a DPoP proof is required: this client\'s tokens are DPoP-bound' });
    expect(await rejectionOf(response)).toMatchObject({ client_id: 'dpop-worker', details: { reason: 'no DPoP header' } });
  });

  test('a replayed DPoP proof → 400 invalid_dpop_proof, reason names the replay', async () => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint });
    const send = () => postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher: client.agent(), headers: { authorization: basicAuth('dpop-worker', DPOP_SECRET), dpop: proof },
    });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(400);
    expect(replay.body).toEqual({ error: 'invalid_dpop_proof', error_description: 'DPoP proof JWT replay detected' });
    expect((await rejectionOf(replay)).details.reason).toBe(`replayed DPoP proof jti for jkt ${key.thumbprint}`);
  });

  test('a token exchange with a subject token that is not Tether\'s → 400 invalid_grant, recorded', async () => {
    const response = await postForm(tether.tokenEndpoint, {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', client_id: 'orders-api', resource: INVOICES,
      subject_token: 'not-a-token', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    }, { dispatcher: client.agent('orders-api') });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_grant');
    const event = await rejectionOf(response);
    expect(event).toMatchObject({ client_id: 'orders-api', details: { route: 'token', error: 'invalid_grant' } });
    expect(typeof event.details.reason).toBe('string');
  });

  test('successful requests leave no rejection', async () => {
    const response = await client.token('worker', ORDERS);
    const events = await tether.database.knex('ledger_events').where({ request_id: response.headers.get('x-request-id') });
    expect(events.map((event) => event.type)).toEqual(['token.issued']);
    expect(events[0].token_id).toBe(decodeJwt(response.body.access_token as string).jti);
  });
});

describe('a rejection that cannot be recorded is still the same rejection', () => {
  test('with ledger_events unwritable, a bad request is still 400 invalid_target (never 500)', async () => {
    const { knex } = tether.database;
    await knex.raw('ALTER TABLE ledger_events RENAME TO ledger_events_away');
    try {
      const response = await tokenRequest('worker', { resource: INVOICES });
      expect(response.status).toBe(400);
      expect(response.body.error).toBe('invalid_target');
      // And nothing is issued while the ledger cannot be written.
      const refused = await tokenRequest('worker', { resource: ORDERS });
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('temporarily_unavailable');
      expect(refused.body.access_token).toBeUndefined();
    } finally {
      await knex.raw('ALTER TABLE ledger_events_away RENAME TO ledger_events');
    }
    expect((await tokenRequest('worker', { resource: ORDERS })).status).toBe(200);
  });
});

describe('requests refused before they reach oidc-provider are recorded too', () => {
  let proxied: RunningTether;

  beforeAll(async () => {
    proxied = await startTestTether({ config: { ...ledgerConfig(), trustedProxies: ['127.0.0.1'] } });
  });

  afterAll(async () => {
    await proxied?.close();
  });

  test('a malformed client-certificate header from a trusted proxy → 400 invalid_request, recorded for the token route', async () => {
    const response = await postForm(proxied.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'worker', resource: ORDERS }, {
      dispatcher: proxied.dispatcherFor(), headers: { 'client-cert': ':not base64:' },
    });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: 'invalid_request', error_description: 'malformed client certificate header' });
    const [event] = await proxied.database.knex('ledger_events').where({ request_id: response.headers.get('x-request-id') });
    expect(event).toMatchObject({ type: 'request.rejected', details: { route: 'token', status: 400, error: 'invalid_request', reason: 'malformed client certificate header' } });
  });
});

import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { request, type Agent } from 'undici';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, ORDERS, REPORTS, testConfig } from '../support/config.js';
import { basicAuth, discoverWithOauth4webapi, oauthFetch, postForm, startTestTether } from '../support/tether.js';

let tether: RunningTether;
let anonymous: Agent;
let as: oauth.AuthorizationServer;


beforeAll(async () => {
  tether = await startTestTether({ config: testConfig() });
  anonymous = tether.dispatcherFor();
  as = await discoverWithOauth4webapi(tether, anonymous);
});

afterAll(async () => {
  await tether?.close();
});

const client: oauth.Client = { client_id: 'dpop-client' };

async function tokenWithProof(proof: string | undefined, form: Record<string, string> = { resource: ORDERS }) {
  return postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', ...form }, {
    dispatcher: anonymous,
    headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), ...(proof ? { dpop: proof } : {}) },
  });
}

describe('DPoP-bound client_credentials (RFC 9449)', () => {
  test('oauth4webapi as the client: token_type DPoP, cnf.jkt = the key thumbprint', async () => {
    const keyPair = await oauth.generateKeyPair('ES256');
    const DPoP = oauth.DPoP(client, keyPair);
    const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(DPOP_SECRET), new URLSearchParams({ resource: ORDERS }), {
      DPoP, [oauth.customFetch]: oauthFetch(anonymous),
    });
    const result = await oauth.processClientCredentialsResponse(as, client, response);
    expect(result.token_type).toBe('dpop');
    const claims = decodeJwt(result.access_token);
    expect(claims.aud).toBe(ORDERS);
    const publicJwk = await exportJWK(keyPair.publicKey);
    expect(claims.cnf).toEqual({ jkt: await calculateJwkThumbprint(publicJwk) });

    // oauth4webapi's RFC 9068 validator, with the DPoP proof a client would send to the API.
    const apiUrl = 'https://orders.test.example/orders';
    const apiRequest = new Request(apiUrl, {
      headers: {
        authorization: `DPoP ${result.access_token}`,
        dpop: await dpopProof({ privateKey: keyPair.privateKey, publicJwk, thumbprint: '', alg: 'ES256' }, { htm: 'GET', htu: apiUrl, accessToken: result.access_token }),
      },
    });
    const validated = await oauth.validateJwtAccessToken(as, apiRequest, ORDERS, { requireDPoP: true, [oauth.customFetch]: oauthFetch(anonymous) });
    expect(validated.client_id).toBe('dpop-client');
  });

  test('an opaque token is DPoP-bound too', async () => {
    const key = await createDpopKey();
    const { status, body } = await tokenWithProof(await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint }), { resource: REPORTS });
    expect(status).toBe(200);
    expect(body.token_type).toBe('DPoP');
  });

  test('no proof from a DPoP-bound client → 400 invalid_request, no token', async () => {
    const { status, body } = await tokenWithProof(undefined);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_request');
    expect(body.access_token).toBeUndefined();
  });

  test.each([
    ['wrong htm', { htm: 'GET' }],
    ['wrong htu', { htu: 'https://localhost:1/token' }],
  ])('%s → 400 invalid_dpop_proof', async (_label, override) => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint, ...override });
    const { status, body } = await tokenWithProof(proof);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_dpop_proof');
  });

  test.each([
    ['iat an hour old', -3600],
    ['iat an hour ahead', 3600],
  ])('%s → 400 use_dpop_nonce with a fresh DPoP-Nonce (RFC 9449 §8: the client proves freshness with a nonce instead)', async (_label, offset) => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint, iat: Math.floor(Date.now() / 1000) + offset });
    const { status, body, headers } = await tokenWithProof(proof);
    expect(status).toBe(400);
    expect(body.error).toBe('use_dpop_nonce');
    expect(headers.get('dpop-nonce')).toBeTruthy();
  });

  test.each([
    ['not a JWT', 'not-a-jwt'],
    ['a proof signed with alg none', `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none' })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`],
  ])('%s → 400 invalid_dpop_proof', async (_label, proof) => {
    const { status, body } = await tokenWithProof(proof);
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_dpop_proof');
  });

  test('a replayed proof → 400 invalid_dpop_proof', async () => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint });
    expect((await tokenWithProof(proof)).status).toBe(200);
    const replay = await tokenWithProof(proof);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_dpop_proof');
  });

  test('eight concurrent requests carrying one proof give exactly one token', async () => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint });
    const results = await Promise.all(Array.from({ length: 8 }, () => tokenWithProof(proof)));
    expect(results.filter((result) => result.status === 200)).toHaveLength(1);
    for (const result of results.filter((each) => each.status !== 200)) {
      expect(result.status).toBe(400);
      expect(result.body.error).toBe('invalid_dpop_proof');
    }
  });

  test('an mTLS-bound client sending a DPoP proof → 400 invalid_request', async () => {
    const key = await createDpopKey();
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS }, {
      dispatcher: tether.dispatcherFor('mtls-client'),
      headers: { dpop: await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint }) },
    });
    expect(status).toBe(400);
    expect(body.error).toBe('invalid_request');
  });
});

describe('two Tether instances sharing one database', () => {
  let second: RunningTether;

  beforeAll(async () => {
    // Behind one load balancer both instances have one issuer: the first one's.
    second = await startTether({ config: testConfig(), database: tether.database, issuer: tether.issuer });
  });

  afterAll(async () => {
    await second?.close();
  });

  test('one proof sent to both instances at once gives exactly one token', async () => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint });
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource: ORDERS }).toString();
    // Each instance is reached on its own port with the issuer's Host, as behind one load balancer.
    const send = (instance: RunningTether) => request(`${instance.origin}/token`, {
      method: 'POST',
      body,
      dispatcher: instance.dispatcherFor(),
      headers: {
        host: new URL(tether.issuer).host,
        'content-type': 'application/x-www-form-urlencoded',
        authorization: basicAuth('dpop-client', DPOP_SECRET),
        dpop: proof,
      },
    }).then(async (response) => ({ status: response.statusCode, body: await response.body.json() as Record<string, unknown> }));
    const results = await Promise.all([send(tether), send(second), send(tether), send(second)]);
    expect(results.filter((result) => result.status === 200)).toHaveLength(1);
    expect(results.filter((result) => result.status === 400 && result.body.error === 'invalid_dpop_proof')).toHaveLength(3);
  });
});

describe('DPoP server nonces (RFC 9449 §8)', () => {
  let strict: RunningTether;

  beforeAll(async () => {
    strict = await startTestTether({ config: { ...testConfig(), dpop: { requireNonce: true } } });
  });

  afterAll(async () => {
    await strict?.close();
  });

  test('a proof without nonce → 400 use_dpop_nonce with a DPoP-Nonce header; retried with it → token', async () => {
    const key = await createDpopKey();
    const dispatcher = strict.dispatcherFor();
    const send = async (nonce?: string) => postForm(strict.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
      dispatcher,
      headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), dpop: await dpopProof(key, { htm: 'POST', htu: strict.tokenEndpoint, nonce }) },
    });
    const first = await send();
    expect(first.status).toBe(400);
    expect(first.body.error).toBe('use_dpop_nonce');
    const nonce = first.headers.get('dpop-nonce');
    expect(nonce).toBeTruthy();
    const second = await send(nonce!);
    expect(second.status).toBe(200);
    expect(second.body.token_type).toBe('DPoP');
  });
});

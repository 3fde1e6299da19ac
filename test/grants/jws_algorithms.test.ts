import { randomUUID } from 'node:crypto';
import { base64url, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { fetch, request, type Agent } from 'undici';
import { JWS_ALGORITHMS } from '../../src/config/jws_algorithms.js';
import { ALLOWED_JWS_ALGORITHMS } from '../../src/provider/client_metadata.js';
import { DEFAULT_ALGORITHMS } from '../../src/resource_server/algorithms.js';
import { createVerifier } from '../../src/resource_server/index.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { basicAuth, discoverWithOauth4webapi, oauthFetch, postForm, startTestTether, type TokenResponse } from '../support/tether.js';

/**
 * Issue 12 item 14: current clients (oauth4webapi 3, openid-client 6) name Ed25519 by its fully
 * specified identifier `Ed25519` (RFC 9864) in DPoP proofs and client assertions; older ones send
 * `EdDSA` (RFC 8037). Tether accepts and advertises both, can sign its tokens under either name, and
 * answers an algorithm it does not accept with a description that says so. The keys here are made
 * by oauth4webapi and the requests sent by it, so the `alg` is whatever that library puts there.
 */

const ORDERS = 'https://orders.alg.test';
const INVOICES = 'https://invoices.alg.test';
const DPOP_SECRET = 'alg-dpop-secret-0123456789abcdefgh';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SUPPORTED = 'ES256, PS256, EdDSA, Ed25519';
const UNSUPPORTED_PROOF = `unsupported DPoP proof alg; supported: ${SUPPORTED}`;
const UNSUPPORTED_ASSERTION = `client_assertion alg is not supported; supported: ${SUPPORTED}`;

let tether: RunningTether;
let anonymous: Agent;
let as: oauth.AuthorizationServer;
/** Client keys by client id (oauth4webapi's key pairs), registered as that client's jwks. */
const clientKeys = new Map<string, oauth.CryptoKeyPair>();

async function jwksOf(keyPair: oauth.CryptoKeyPair): Promise<{ keys: JWK[] }> {
  return { keys: [{ ...(await exportJWK(keyPair.publicKey)), use: 'sig' }] };
}

function jwtClient(id: string, jwks: { keys: JWK[] }): Record<string, unknown> {
  return { id, owner: 'team-alg', purpose: 'JWS algorithm tests', binding: 'dpop', auth: { method: 'private_key_jwt', jwks }, resources: { [ORDERS]: ['orders:read'] } };
}

beforeAll(async () => {
  for (const [id, alg] of [['ed-jwt', 'Ed25519'], ['rsa-jwt', 'RS256'], ['p521-jwt', 'ES512'], ['pss512-jwt', 'PS512']] as const) {
    clientKeys.set(id, await oauth.generateKeyPair(alg));
  }
  tether = await startTestTether({
    config: {
      // Tether signs under the fully specified name too (config/jws_algorithms.ts).
      signing: { algorithm: 'Ed25519' },
      resources: [
        { uri: ORDERS, scopes: ['orders:read'], lifetime: 300 },
        { uri: INVOICES, scopes: ['orders:read'], lifetime: 300 },
      ],
      clients: [
        {
          id: 'ed-dpop', owner: 'team-alg', purpose: 'JWS algorithm tests', binding: 'dpop',
          auth: { method: 'client_secret_basic', secret: DPOP_SECRET },
          resources: { [ORDERS]: ['orders:read'] }, exchange: { targets: { [INVOICES]: ['orders:read'] } },
        },
        ...await Promise.all([...clientKeys].map(async ([id, keyPair]) => jwtClient(id, await jwksOf(keyPair)))),
      ],
    },
  });
  anonymous = tether.dispatcherFor();
  as = await discoverWithOauth4webapi(tether, anonymous);
});

afterAll(async () => {
  await tether?.close();
});

/** oauth4webapi's fetch over TLS to Tether, remembering every request it sent. */
function recordingFetch(sent: { headers: Headers; body: URLSearchParams }[]) {
  const send = oauthFetch(anonymous) as unknown as (url: string, init: { headers: HeaderInit; body?: unknown }) => Promise<Response>;
  return (async (url: string, init: { headers: HeaderInit; body?: unknown }) => {
    sent.push({ headers: new Headers(init.headers), body: new URLSearchParams(String(init.body ?? '')) });
    return send(url, init);
  }) as never;
}

const dpopClient: oauth.Client = { client_id: 'ed-dpop' };

type HeaderInit = ConstructorParameters<typeof Headers>[0];

/** oauth4webapi's hook that rewrites a JWT header before signing: here, the `alg` name it sends. */
function spellingAlg(alg: string | undefined): oauth.ModifyAssertionOptions | undefined {
  return alg === undefined ? undefined : { [oauth.modifyAssertion]: (header) => { header.alg = alg; } };
}

/** client_credentials by ed-dpop through oauth4webapi with a DPoP key; the raw response and what was sent. */
async function dpopTokenRequest(keyPair: oauth.CryptoKeyPair, proofAlg?: string) {
  const sent: { headers: Headers; body: URLSearchParams }[] = [];
  const DPoP = oauth.DPoP(dpopClient, keyPair, spellingAlg(proofAlg));
  const response = await oauth.clientCredentialsGrantRequest(as, dpopClient, oauth.ClientSecretBasic(DPOP_SECRET), { resource: ORDERS }, {
    DPoP, [oauth.customFetch]: recordingFetch(sent),
  });
  return { response, proof: sent[0]!.headers.get('dpop')!, DPoP };
}

async function bodyOf(response: Response): Promise<Record<string, unknown>> {
  return await response.json() as Record<string, unknown>;
}

async function lastRejection(clientId: string): Promise<Record<string, unknown>> {
  const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: clientId }).orderBy('id', 'desc').first();
  return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
}

async function issuedCount(clientId: string): Promise<number> {
  const rows = await tether.database.knex('issued_tokens').where({ client_id: clientId }).count({ count: '*' });
  return Number(rows[0]!.count);
}

describe('one list of algorithms', () => {
  test('the server, oidc-provider\'s wiring and the resource-server default agree', () => {
    expect(JWS_ALGORITHMS).toEqual(['ES256', 'PS256', 'EdDSA', 'Ed25519']);
    expect(ALLOWED_JWS_ALGORITHMS).toBe(JWS_ALGORITHMS);
    expect(DEFAULT_ALGORITHMS).toEqual(JWS_ALGORITHMS);
  });

  test('discovery advertises both Ed25519 spellings for client assertions and DPoP proofs (RFC 8414, RFC 9449 §5.1)', () => {
    expect(as.token_endpoint_auth_signing_alg_values_supported).toEqual(['ES256', 'PS256', 'EdDSA', 'Ed25519']);
    expect(as.dpop_signing_alg_values_supported).toEqual(['ES256', 'PS256', 'EdDSA', 'Ed25519']);
  });
});

describe('DPoP proofs with Ed25519 keys made by oauth4webapi', () => {
  test('oauth4webapi\'s own proof (alg "Ed25519") → a DPoP-bound token, cnf.jkt = the key; Tether signs it "Ed25519"', async () => {
    const keyPair = await oauth.generateKeyPair('Ed25519');
    const { response, proof } = await dpopTokenRequest(keyPair);
    expect(decodeProtectedHeader(proof)).toMatchObject({ alg: 'Ed25519', typ: 'dpop+jwt' });
    const result = await oauth.processClientCredentialsResponse(as, dpopClient, response);
    expect(result.token_type).toBe('dpop');
    expect(decodeProtectedHeader(result.access_token)).toMatchObject({ alg: 'Ed25519', typ: 'at+jwt' });
    expect(decodeJwt(result.access_token).cnf).toEqual({ jkt: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)) });
  });

  test('the same key with the proof\'s alg spelled "EdDSA" (RFC 8037) → a token as well', async () => {
    const keyPair = await oauth.generateKeyPair('Ed25519');
    const { response, proof } = await dpopTokenRequest(keyPair, 'EdDSA');
    expect(decodeProtectedHeader(proof).alg).toBe('EdDSA');
    expect(response.status).toBe(200);
    expect((await bodyOf(response)).token_type).toBe('DPoP');
  });

  test('the resource-server verifier, with its defaults, accepts the Ed25519-signed token and oauth4webapi\'s Ed25519 proof at the API', async () => {
    const keyPair = await oauth.generateKeyPair('Ed25519');
    const { response, DPoP } = await dpopTokenRequest(keyPair);
    const { access_token: token } = await oauth.processClientCredentialsResponse(as, dpopClient, response);
    const jwks = await (await fetch(tether.jwksUri, { dispatcher: anonymous })).json() as { keys: JWK[] };
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'Ed25519' });

    // oauth4webapi builds the API request (and its proof); it is handed to the verifier instead of sent.
    const apiUrl = `${ORDERS}/orders/7`;
    let apiRequest: { headers: Headers } | undefined;
    await oauth.protectedResourceRequest(token, 'GET', new URL(apiUrl), new Headers(), null, {
      DPoP,
      [oauth.customFetch]: (async (_url: string, init: { headers: HeaderInit }) => {
        apiRequest = { headers: new Headers(init.headers) };
        return new Response('{}', { status: 200 });
      }) as never,
    });
    expect(decodeProtectedHeader(apiRequest!.headers.get('dpop')!).alg).toBe('Ed25519');

    const verifier = createVerifier({ issuer: tether.issuer, audience: ORDERS, jwks });
    const verified = await verifier.verifyWithBinding({
      method: 'GET', url: apiUrl, headers: { authorization: apiRequest!.headers.get('authorization')!, dpop: apiRequest!.headers.get('dpop')! },
    });
    expect(verified).toMatchObject({ binding: 'dpop', claims: { client_id: 'ed-dpop', aud: ORDERS } });
  });

  test('token exchange of its own DPoP-bound token with an Ed25519 proof; an unsupported proof alg there is named too', async () => {
    const keyPair = await oauth.generateKeyPair('Ed25519');
    const { response, DPoP } = await dpopTokenRequest(keyPair);
    const { access_token: subject } = await oauth.processClientCredentialsResponse(as, dpopClient, response);
    const params = { subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: INVOICES };
    const exchanged = await oauth.processGenericTokenEndpointResponse(as, dpopClient,
      await oauth.genericTokenEndpointRequest(as, dpopClient, oauth.ClientSecretBasic(DPOP_SECRET), TOKEN_EXCHANGE, params, { DPoP, [oauth.customFetch]: oauthFetch(anonymous) }));
    expect(decodeJwt(exchanged.access_token)).toMatchObject({ aud: INVOICES, cnf: decodeJwt(subject).cnf });

    const es512 = oauth.DPoP(dpopClient, await oauth.generateKeyPair('ES512'));
    const refused = await oauth.genericTokenEndpointRequest(as, dpopClient, oauth.ClientSecretBasic(DPOP_SECRET), TOKEN_EXCHANGE, params, { DPoP: es512, [oauth.customFetch]: oauthFetch(anonymous) });
    expect({ status: refused.status, body: await bodyOf(refused) }).toEqual({ status: 400, body: { error: 'invalid_dpop_proof', error_description: UNSUPPORTED_PROOF } });
    expect(await lastRejection('ed-dpop')).toMatchObject({ error: 'invalid_dpop_proof', reason: `DPoP proof alg "ES512" is not one of ${SUPPORTED}` });
  });
});

describe('DPoP proofs with an algorithm Tether does not accept → 400 invalid_dpop_proof that says so', () => {
  test.each([
    ['ES512 (P-521)', 'ES512'],
    ['RS256 (PKCS#1 v1.5)', 'RS256'],
    ['PS512', 'PS512'],
  ])('oauth4webapi with a %s key', async (_label, alg) => {
    const before = await issuedCount('ed-dpop');
    const { response, proof } = await dpopTokenRequest(await oauth.generateKeyPair(alg));
    expect(decodeProtectedHeader(proof).alg).toBe(alg);
    expect({ status: response.status, body: await bodyOf(response) }).toEqual({ status: 400, body: { error: 'invalid_dpop_proof', error_description: UNSUPPORTED_PROOF } });
    expect(await lastRejection('ed-dpop')).toMatchObject({ error: 'invalid_dpop_proof', error_description: UNSUPPORTED_PROOF, reason: `DPoP proof alg "${alg}" is not one of ${SUPPORTED}` });
    expect(await issuedCount('ed-dpop')).toBe(before);
  });

  /** A proof with any header, signed (where it can be) by an Ed25519 key whose public JWK is embedded. */
  async function craftedProof(header: Record<string, unknown>): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair('Ed25519');
    const claims = { htm: 'POST', htu: tether.tokenEndpoint, iat: Math.floor(Date.now() / 1000), jti: randomUUID() };
    const protectedHeader = { typ: 'dpop+jwt', jwk: await exportJWK(publicKey), ...header };
    const input = `${base64url.encode(JSON.stringify(protectedHeader))}.${base64url.encode(JSON.stringify(claims))}`;
    const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', privateKey, new TextEncoder().encode(input)));
    return `${input}.${base64url.encode(signature)}`;
  }

  const sendProof = (proof: string) => postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: ORDERS }, {
    dispatcher: anonymous, headers: { authorization: basicAuth('ed-dpop', DPOP_SECRET), dpop: proof },
  });

  test.each([
    ['HS256', { alg: 'HS256' }, '"HS256"'],
    ['none', { alg: 'none' }, '"none"'],
    ['Ed448', { alg: 'Ed448' }, '"Ed448"'],
    ['a case variant of Ed25519 (alg is case-sensitive, RFC 7515 §4.1.1)', { alg: 'ed25519' }, '"ed25519"'],
    ['no alg at all', { alg: undefined }, 'undefined'],
    ['an alg that is not a string', { alg: ['Ed25519'] }, '["Ed25519"]'],
  ])('a proof with %s', async (_label, header, named) => {
    const response: TokenResponse = await sendProof(await craftedProof(header));
    expect({ status: response.status, body: response.body }).toEqual({ status: 400, body: { error: 'invalid_dpop_proof', error_description: UNSUPPORTED_PROOF } });
    expect((await lastRejection('ed-dpop')).reason).toBe(`DPoP proof alg ${named} is not one of ${SUPPORTED}`);
  });

  test('an alg of 5,000 characters: the same answer, and the ledger keeps a bounded reason', async () => {
    const response = await sendProof(await craftedProof({ alg: 'A'.repeat(5000) }));
    expect(response.body).toEqual({ error: 'invalid_dpop_proof', error_description: UNSUPPORTED_PROOF });
    const reason = (await lastRejection('ed-dpop')).reason as string;
    expect(reason).toBe(`DPoP proof alg ${`"${'A'.repeat(5000)}"`.slice(0, 64)} is not one of ${SUPPORTED}`);
  });

  test('two DPoP header lines (RFC 9449 §4.3 check 1: not more than one) → 400 invalid_dpop_proof, no token', async () => {
    const before = await issuedCount('ed-dpop');
    const good = await craftedProof({ alg: 'Ed25519' });
    for (const second of [good, await craftedProof({ alg: 'Ed25519' }), await craftedProof({ alg: 'ES512' })]) {
      const response = await request(tether.tokenEndpoint, {
        method: 'POST', dispatcher: anonymous,
        headers: ['content-type', 'application/x-www-form-urlencoded', 'authorization', basicAuth('ed-dpop', DPOP_SECRET), 'dpop', good, 'dpop', second],
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: ORDERS }).toString(),
      });
      const body = await response.body.json() as Record<string, unknown>;
      expect({ status: response.statusCode, error: body.error, token: body.access_token }).toEqual({ status: 400, error: 'invalid_dpop_proof', token: undefined });
    }
    expect(await issuedCount('ed-dpop')).toBe(before);
  });

  test('a supported alg with a key of another type (Ed25519 alg, P-256 jwk) is still refused, as a bad key binding', async () => {
    const p256 = await exportJWK((await generateKeyPair('ES256')).publicKey);
    const response = await sendProof(await craftedProof({ alg: 'Ed25519', jwk: p256 }));
    expect({ status: response.status, error: response.body.error }).toEqual({ status: 400, error: 'invalid_dpop_proof' });
    expect(response.body.error_description).not.toBe(UNSUPPORTED_PROOF);
  });

  test('an Ed25519 proof whose signature is another key\'s is refused', async () => {
    const other = await exportJWK((await generateKeyPair('Ed25519')).publicKey);
    const response = await sendProof(await craftedProof({ alg: 'Ed25519', jwk: other }));
    expect({ status: response.status, error: response.body.error }).toEqual({ status: 400, error: 'invalid_dpop_proof' });
  });
});

describe('private_key_jwt client assertions (RFC 7523) made by oauth4webapi', () => {
  async function assertionTokenRequest(clientId: string, assertionAlg?: string, keyPair = clientKeys.get(clientId)!) {
    const client: oauth.Client = { client_id: clientId };
    const sent: { headers: Headers; body: URLSearchParams }[] = [];
    const auth = oauth.PrivateKeyJwt(keyPair.privateKey, spellingAlg(assertionAlg));
    const response = await oauth.clientCredentialsGrantRequest(as, client, auth, { resource: ORDERS }, {
      DPoP: oauth.DPoP(client, await oauth.generateKeyPair('Ed25519')), [oauth.customFetch]: recordingFetch(sent),
    });
    return { response, assertion: sent[0]!.body.get('client_assertion')! };
  }

  test('an Ed25519 key: oauth4webapi signs the assertion "Ed25519" → authenticated', async () => {
    const { response, assertion } = await assertionTokenRequest('ed-jwt');
    expect(decodeProtectedHeader(assertion).alg).toBe('Ed25519');
    const result = await oauth.processClientCredentialsResponse(as, { client_id: 'ed-jwt' }, response);
    expect(decodeJwt(result.access_token).client_id).toBe('ed-jwt');
  });

  test('the same key, the assertion\'s alg spelled "EdDSA" → authenticated', async () => {
    const { response, assertion } = await assertionTokenRequest('ed-jwt', 'EdDSA');
    expect(decodeProtectedHeader(assertion).alg).toBe('EdDSA');
    expect(response.status).toBe(200);
  });

  test.each([
    ['RS256', 'rsa-jwt'],
    ['ES512', 'p521-jwt'],
    ['PS512', 'pss512-jwt'],
  ])('%s, signed with the client\'s registered key → 401 invalid_client that names the algorithm as the problem', async (alg, clientId) => {
    const { response, assertion } = await assertionTokenRequest(clientId);
    expect(decodeProtectedHeader(assertion).alg).toBe(alg);
    expect({ status: response.status, body: await bodyOf(response) }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: UNSUPPORTED_ASSERTION } });
    // The private reason is oidc-provider's own; the ledger records what the client was told, too.
    expect(await lastRejection(clientId)).toMatchObject({ error: 'invalid_client', error_description: UNSUPPORTED_ASSERTION, reason: 'alg mismatch' });
    expect(await issuedCount(clientId)).toBe(0);
  });

  test('an unsupported alg for a client id that does not exist gets the same answer (no client enumeration)', async () => {
    const { response } = await assertionTokenRequest('ghost-client', undefined, clientKeys.get('rsa-jwt')!);
    expect({ status: response.status, body: await bodyOf(response) }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: UNSUPPORTED_ASSERTION } });
    expect((await lastRejection('ghost-client')).reason).toBe('client not found');
  });

  test('a supported alg that fails for another reason keeps the generic answer (nothing about which check)', async () => {
    const { response } = await assertionTokenRequest('ed-jwt', undefined, await oauth.generateKeyPair('Ed25519'));
    expect({ status: response.status, body: await bodyOf(response) }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } });
    const unknown = await assertionTokenRequest('ghost-client', undefined, clientKeys.get('ed-jwt')!);
    expect(await bodyOf(unknown.response)).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });

  test('the introspection and revocation endpoints answer an unsupported assertion alg the same way', async () => {
    const rsaKey = clientKeys.get('rsa-jwt')!.privateKey;
    for (const endpoint of [as.introspection_endpoint!, as.revocation_endpoint!]) {
      const assertion = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setIssuer('rsa-jwt').setSubject('rsa-jwt').setAudience(tether.issuer)
        .setJti(randomUUID()).setIssuedAt().setExpirationTime('1m').sign(rsaKey);
      const response = await postForm(endpoint, {
        token: 'x'.repeat(43), client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
      }, { dispatcher: anonymous });
      expect({ status: response.status, body: response.body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: UNSUPPORTED_ASSERTION } });
    }
  });

  test('an HS256 assertion and an unsigned one (alg none), hand-made', async () => {
    const payload = { iss: 'ed-jwt', sub: 'ed-jwt', aud: tether.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 };
    const hs256 = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('a-guessable-secret-a-guessable-secret'));
    const none = `${base64url.encode(JSON.stringify({ alg: 'none' }))}.${base64url.encode(JSON.stringify({ ...payload, jti: randomUUID() }))}.`;
    for (const clientAssertion of [hs256, none]) {
      const response = await postForm(tether.tokenEndpoint, {
        grant_type: 'client_credentials', resource: ORDERS, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: clientAssertion,
      }, { dispatcher: anonymous });
      expect({ status: response.status, body: response.body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: UNSUPPORTED_ASSERTION } });
    }
  });
});

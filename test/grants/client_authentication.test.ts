import { randomUUID } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { Agent } from 'undici';
import { createEphemeralPki, issueClientCertificate, type IssuedClientCertificate } from '../../src/keys/dev_pki.js';
import { createDpopKey, dpopProof } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether } from '../support/tether.js';

const ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let tether: RunningTether;
let anonymous: Agent;
let signingKey: CryptoKey;
let selfSigned: IssuedClientCertificate;
let otherSelfSigned: IssuedClientCertificate;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  signingKey = privateKey;
  const scratch = await createEphemeralPki();
  selfSigned = await issueClientCertificate(scratch, 'self-signed-client', { selfSigned: true });
  otherSelfSigned = await issueClientCertificate(scratch, 'self-signed-client', { selfSigned: true });

  tether = await startTestTether({
    config: testConfig({
      clients: [
        {
          id: 'jwt-client', owner: 'team-d', purpose: 'tests', binding: 'dpop',
          auth: { method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] } },
          resources: { [ORDERS]: ['orders:read'] },
        },
        {
          id: 'san-client', owner: 'team-f', purpose: 'tests', binding: 'mtls',
          auth: { method: 'tls_client_auth', sanDns: 'san-client' },
          resources: { [ORDERS]: ['orders:read'] },
        },
        {
          id: 'wrong-san-client', owner: 'team-f', purpose: 'tests', binding: 'mtls',
          auth: { method: 'tls_client_auth', sanDns: 'someone-else' },
          resources: { [ORDERS]: ['orders:read'] },
        },
        {
          id: 'self-signed-client', owner: 'team-e', purpose: 'tests', binding: 'mtls',
          auth: { method: 'self_signed_tls_client_auth', jwks: { keys: [selfSigned.jwk] } },
          resources: { [ORDERS]: ['orders:read'] },
        },
      ],
    }),
  });
  anonymous = tether.dispatcherFor();
});

afterAll(async () => {
  await tether?.close();
});

async function assertion(overrides: { alg?: string; key?: CryptoKey | Uint8Array; aud?: string; jti?: string } = {}) {
  return new SignJWT({})
    .setProtectedHeader({ alg: overrides.alg ?? 'ES256' })
    .setIssuer('jwt-client')
    .setSubject('jwt-client')
    .setAudience(overrides.aud ?? tether.issuer)
    .setJti(overrides.jti ?? randomUUID())
    .setIssuedAt()
    .setExpirationTime('1m')
    .sign(overrides.key ?? signingKey);
}

async function withAssertion(clientAssertion: string) {
  const key = await createDpopKey();
  return postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials', resource: ORDERS, client_assertion_type: ASSERTION, client_assertion: clientAssertion,
  }, { dispatcher: anonymous, headers: { dpop: await dpopProof(key, { htm: 'POST', htu: tether.tokenEndpoint }) } });
}

describe('private_key_jwt (RFC 7523)', () => {
  test('an ES256 assertion authenticates the client', async () => {
    const { status, body } = await withAssertion(await assertion());
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).client_id).toBe('jwt-client');
  });

  test('an assertion is single-use: a replayed jti → 401 invalid_client', async () => {
    const once = await assertion();
    expect((await withAssertion(once)).status).toBe(200);
    const replay = await withAssertion(once);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('invalid_client');
  });

  test.each([
    ['signed by another key', async () => assertion({ key: (await generateKeyPair('ES256')).privateKey })],
    ['another audience', async () => assertion({ aud: 'https://elsewhere.example' })],
  ])('%s → 401 invalid_client, no hint', async (_label, make) => {
    const { status, body } = await withAssertion(await make());
    expect(status).toBe(401);
    expect(body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
  });

  // Issue 12 item 14: an algorithm Tether never accepts is named as the problem (the list is public);
  // test/grants/jws_algorithms.test.ts has the same for unknown clients and other algorithms.
  test.each([
    ['HS256 with a guessable secret', async () => assertion({ alg: 'HS256', key: new TextEncoder().encode('secret-secret-secret-secret-1234') })],
    ['RS256 (not allowed)', async () => assertion({ alg: 'RS256', key: (await generateKeyPair('RS256')).privateKey })],
    ['alg none', async () => `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'jwt-client', sub: 'jwt-client', aud: tether.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.`],
  ])('%s → 401 invalid_client "client_assertion alg is not supported"', async (_label, make) => {
    const { status, body } = await withAssertion(await make());
    expect(status).toBe(401);
    expect(body).toEqual({ error: 'invalid_client', error_description: 'client_assertion alg is not supported; supported: ES256, PS256, EdDSA, Ed25519' });
  });
});

describe('self_signed_tls_client_auth (RFC 8705 §2.2)', () => {
  const agentWith = (certificate: IssuedClientCertificate) => new Agent({
    connect: { ca: tether.pki.ca.certificatePem, cert: certificate.certificatePem, key: certificate.privateKeyPem },
  });

  test('the registered self-signed certificate authenticates and binds the token', async () => {
    const agent = agentWith(selfSigned);
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'self-signed-client', resource: ORDERS }, { dispatcher: agent });
    await agent.close();
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).cnf).toEqual({ 'x5t#S256': selfSigned.thumbprint });
  });

  test('another self-signed certificate with the same subject → 401 invalid_client', async () => {
    const agent = agentWith(otherSelfSigned);
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'self-signed-client', resource: ORDERS }, { dispatcher: agent });
    await agent.close();
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });
});

describe('tls_client_auth (RFC 8705 §2.1)', () => {
  test('a registered SAN dNSName matches the certificate', async () => {
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'san-client', resource: ORDERS }, { dispatcher: tether.dispatcherFor('san-client') });
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string).cnf).toEqual({ 'x5t#S256': tether.pki.clients['san-client']!.thumbprint });
  });

  test('a certificate from the CA whose SAN is not the registered one → 401 invalid_client', async () => {
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'wrong-san-client', resource: ORDERS }, { dispatcher: tether.dispatcherFor('wrong-san-client') });
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  test('a self-signed certificate with the registered subject DN is not from the CA → 401 invalid_client', async () => {
    const scratch = await createEphemeralPki();
    const impostor = await issueClientCertificate(scratch, 'mtls-client', { selfSigned: true });
    const agent = new Agent({ connect: { ca: tether.pki.ca.certificatePem, cert: impostor.certificatePem, key: impostor.privateKeyPem } });
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS }, { dispatcher: agent });
    await agent.close();
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });

  test('a certificate from another CA with the registered subject DN → 401 invalid_client', async () => {
    const otherCa = await createEphemeralPki({ clientNames: ['mtls-client'] });
    const certificate = otherCa.clients['mtls-client']!;
    const agent = new Agent({ connect: { ca: tether.pki.ca.certificatePem, cert: certificate.certificatePem, key: certificate.privateKeyPem } });
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS }, { dispatcher: agent });
    await agent.close();
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
  });
});

// Every access-token rule, each with the exact bad input and the error code it must produce.
import { generateKeyPairSync, sign as nodeSign, constants as cryptoConstants, randomUUID } from 'node:crypto';
import * as jose from 'jose';
import { createVerifier, VerifierError, type Verifier } from '../../src/resource_server/index.js';
import {
  AUDIENCE,
  b64,
  bearerRequest,
  decodePart,
  expectCode,
  hmacJws,
  jwksOf,
  makeCertificates,
  makeSigningKey,
  mintAccessToken,
  nowSeconds,
  rawSign,
  startIssuer,
  startTestServer,
  unsignedJws,
  type SigningKey,
  type TestIssuer,
  type TestServer,
} from './helpers.js';

const ISSUER = 'https://issuer.test';

let key: SigningKey;
let attacker: SigningKey;
let verifier: Verifier;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
  attacker = await makeSigningKey('ES256', key.kid); // same kid as the real key
  // allowBearer: these tests are about the token; binding has its own tests.
  verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true });
});

function mint(options: Omit<Parameters<typeof mintAccessToken>[1], 'issuer'> & { issuer?: string } = {}): Promise<string> {
  return mintAccessToken(key, { issuer: ISSUER, ...options });
}

function verify(token: string, extra: Record<string, unknown> = {}) {
  return verifier.verify(bearerRequest(token, extra));
}

function baseClaims(): Record<string, unknown> {
  const now = nowSeconds();
  return { iss: ISSUER, aud: AUDIENCE, sub: 'client-a', client_id: 'client-a', jti: randomUUID(), iat: now, exp: now + 300 };
}

describe('a valid token', () => {
  test('resolves to its claims', async () => {
    const claims = await verify(await mint());
    expect(claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: 'client-a', client_id: 'client-a', scope: 'orders:read orders:write' });
  });

  test('ES256, PS256 and EdDSA are accepted by default', async () => {
    for (const alg of ['PS256', 'EdDSA']) {
      const other = await makeSigningKey(alg);
      const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key, other), allowBearer: true });
      await expect(v.verify(bearerRequest(await mintAccessToken(other, { issuer: ISSUER })))).resolves.toMatchObject({ sub: 'client-a' });
    }
  });

  test('the scheme name is case-insensitive and several spaces may separate it', async () => {
    const token = await mint();
    await expect(verifier.verify(bearerRequest(token, {}, 'bearer'))).resolves.toBeDefined();
    await expect(verifier.verify({ method: 'GET', url: AUDIENCE, headers: { authorization: `BEARER   ${token}` } })).resolves.toBeDefined();
  });
});

describe('algorithm', () => {
  test.each(['none', 'None', 'NONE', 'nOnE'])('alg %s is refused (unsigned and with a signature)', async (alg) => {
    const header = { alg, typ: 'at+jwt', kid: key.kid };
    await expectCode(verify(unsignedJws(header, baseClaims())), 'ERR_TOKEN_ALGORITHM');
    const withSignature = `${unsignedJws(header, baseClaims())}${b64('x'.repeat(64))}`;
    await expectCode(verify(withSignature), 'ERR_TOKEN_ALGORITHM');
  });

  test('HS256 keyed with the public key bytes (algorithm confusion) is refused', async () => {
    const spki = await jose.exportSPKI(key.publicKey);
    const secrets = [
      Buffer.from(spki),
      Buffer.from(JSON.stringify(key.publicJwk)),
      Buffer.from(key.publicJwk.x as string, 'base64url'),
      Buffer.from(spki.replace(/-----[^-]+-----|\s/g, ''), 'base64'),
    ];
    for (const secret of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        await expectCode(verify(hmacJws({ alg, typ: 'at+jwt', kid: key.kid }, baseClaims(), secret)), 'ERR_TOKEN_ALGORITHM');
      }
    }
  });

  test('none and HMAC algorithms cannot even be configured', () => {
    for (const alg of ['none', 'HS256', 'es256']) {
      expect(() => createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), algorithms: [alg as 'ES256'] })).toThrow(TypeError);
    }
  });

  test('RS256 is refused unless configured', async () => {
    const rsa = await makeSigningKey('RS256');
    const token = await mintAccessToken(rsa, { issuer: ISSUER });
    const byDefault = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(rsa), allowBearer: true });
    await expectCode(byDefault.verify(bearerRequest(token)), 'ERR_TOKEN_ALGORITHM');
    const configured = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(rsa), allowBearer: true, algorithms: ['RS256'] });
    await expect(configured.verify(bearerRequest(token))).resolves.toMatchObject({ sub: 'client-a' });
  });

  test('an algorithm outside the configured list is refused even when the key could verify it', async () => {
    const only = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, algorithms: ['PS256'] });
    await expectCode(only.verify(bearerRequest(await mint())), 'ERR_TOKEN_ALGORITHM');
  });

  test('an ES256 token with a P-384 key of the same kid finds no key (curve must fit the algorithm)', async () => {
    const p384 = await makeSigningKey('ES384', key.kid);
    const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [{ ...p384.publicJwk, alg: undefined }] }, allowBearer: true });
    await expectCode(v.verify(bearerRequest(await mint())), 'ERR_JWKS_NO_MATCHING_KEY');
  });

  test('an RSA key shorter than 2048 bits is not usable', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'small' };
    const header = { alg: 'PS256', typ: 'at+jwt', kid: 'small' };
    const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(baseClaims()))}`;
    const signature = nodeSign('sha256', Buffer.from(input), { key: privateKey, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [jwk] }, allowBearer: true });
    await expectCode(v.verify(bearerRequest(`${input}.${b64(signature)}`)), 'ERR_JWKS_NO_MATCHING_KEY');
  });
});

describe('keys come from the issuer JWKS only', () => {
  let attackerServer: TestServer;
  let issuer: TestIssuer;
  let remote: Verifier;
  let certs: ReturnType<typeof makeCertificates>;

  beforeAll(async () => {
    attackerServer = await startTestServer();
    attackerServer.route('/jwks', (_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(jwksOf(attacker)));
    });
    attackerServer.route('/cert', (_req, res) => res.end('not fetched'));
    issuer = await startIssuer(jwksOf(key));
    certs = makeCertificates(['attacker']);
  });
  afterAll(async () => {
    await attackerServer.close();
    await issuer.close();
  });

  beforeEach(() => {
    remote = createVerifier({ issuer: issuer.issuer, audience: AUDIENCE, jwksUri: `${issuer.url}/jwks`, allowBearer: true });
  });

  async function attackerToken(header: Record<string, unknown>, signer: { alg: string; privateKey: jose.CryptoKey } = attacker): Promise<string> {
    return rawSign(signer, { alg: 'ES256', typ: 'at+jwt', ...header }, { ...baseClaims(), iss: issuer.issuer });
  }

  test('jku pointing at the attacker JWKS: refused, and the URL is never fetched', async () => {
    for (const kid of [key.kid, 'attacker-kid']) {
      const token = await attackerToken({ kid, jku: `${attackerServer.url}/jwks` });
      await expectCode(remote.verify(bearerRequest(token)), kid === key.kid ? 'ERR_TOKEN_SIGNATURE' : 'ERR_JWKS_NO_MATCHING_KEY');
    }
    expect(attackerServer.hits.get('/jwks')).toBeUndefined();
  });

  test('x5u pointing at the attacker: refused, never fetched', async () => {
    const token = await attackerToken({ kid: key.kid, x5u: `${attackerServer.url}/cert` });
    await expectCode(remote.verify(bearerRequest(token)), 'ERR_TOKEN_SIGNATURE');
    expect(attackerServer.hits.get('/cert')).toBeUndefined();
  });

  test('embedded jwk of the attacker key: refused', async () => {
    await expectCode(remote.verify(bearerRequest(await attackerToken({ kid: key.kid, jwk: attacker.publicJwk }))), 'ERR_TOKEN_SIGNATURE');
    await expectCode(remote.verify(bearerRequest(await attackerToken({ jwk: attacker.publicJwk }))), 'ERR_TOKEN_SIGNATURE');
  });

  test('x5c with the attacker certificate: refused', async () => {
    const cert = certs.attacker as (typeof certs)[string];
    const signer = { alg: 'ES256', privateKey: await jose.importPKCS8(cert.key, 'ES256') };
    const token = await attackerToken({ kid: key.kid, x5c: [cert.der.toString('base64')] }, signer);
    await expectCode(remote.verify(bearerRequest(token)), 'ERR_TOKEN_SIGNATURE');
    const noKid = await attackerToken({ x5c: [cert.der.toString('base64')] }, signer);
    await expectCode(remote.verify(bearerRequest(noKid)), 'ERR_TOKEN_SIGNATURE');
  });

  test('a genuine token carrying jku is verified with the issuer key and jku is still not fetched', async () => {
    const token = await mintAccessToken(key, { issuer: issuer.issuer, header: { jku: `${attackerServer.url}/jwks` } });
    await expect(remote.verify(bearerRequest(token))).resolves.toMatchObject({ sub: 'client-a' });
    expect(attackerServer.hits.get('/jwks')).toBeUndefined();
  });

  test('the attacker key with the real kid fails the signature', async () => {
    await expectCode(remote.verify(bearerRequest(await mintAccessToken(attacker, { issuer: issuer.issuer }))), 'ERR_TOKEN_SIGNATURE');
  });
});

describe('header', () => {
  test('crit is refused', async () => {
    const token = await rawSign(key, { alg: 'ES256', typ: 'at+jwt', kid: key.kid, crit: ['exp'], exp: 1 }, baseClaims());
    await expectCode(verify(token), 'ERR_TOKEN_CRIT');
    const b64false = await rawSign(key, { alg: 'ES256', typ: 'at+jwt', kid: key.kid, crit: ['b64'], b64: false }, baseClaims());
    await expectCode(verify(b64false), 'ERR_TOKEN_CRIT');
  });

  test.each([['JWT'], ['jwt'], ['dpop+jwt'], ['application/jwt'], ['at+jwt; charset=utf-8'], [''], [42]])('typ %p is refused', async (typ) => {
    await expectCode(verify(await mint({ header: { typ } })), 'ERR_TOKEN_TYPE');
  });

  test('a missing typ is refused', async () => {
    const token = await rawSign(key, { alg: 'ES256', kid: key.kid }, baseClaims());
    await expectCode(verify(token), 'ERR_TOKEN_TYPE');
  });

  test.each(['at+jwt', 'AT+JWT', 'At+Jwt', 'application/at+jwt', 'Application/AT+JWT'])('typ %s is accepted (RFC 9068 §4, case-insensitive)', async (typ) => {
    await expect(verify(await mint({ header: { typ } }))).resolves.toBeDefined();
  });

  test('an ID token (typ JWT, aud = client, nonce, at_hash) is refused', async () => {
    const now = nowSeconds();
    const idToken = await mint({
      header: { typ: 'JWT' },
      claims: { aud: 'client-a', nonce: 'n-0S6_WzA2Mj', auth_time: now, at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q', azp: 'client-a' },
      omit: ['scope', 'client_id'],
    });
    await expectCode(verify(idToken), 'ERR_TOKEN_TYPE');
  });

  test('a non-string kid is refused', async () => {
    await expectCode(verify(await mint({ header: { kid: 7 } })), 'ERR_TOKEN_MALFORMED');
  });

  test('without kid the only fitting key is used; with two fitting keys the token is refused', async () => {
    const token = await rawSign(key, { alg: 'ES256', typ: 'at+jwt' }, baseClaims());
    await expect(verify(token)).resolves.toBeDefined();
    const two = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key, await makeSigningKey('ES256')), allowBearer: true });
    await expectCode(two.verify(bearerRequest(token)), 'ERR_JWKS_MULTIPLE_MATCHING_KEYS');
  });

  test('an unknown kid in a local JWKS finds no key', async () => {
    await expectCode(verify(await mint({ header: { kid: 'unknown' } })), 'ERR_JWKS_NO_MATCHING_KEY');
  });

  test('private members in a published JWK are ignored, the key still verifies as a public key', async () => {
    const privateJwk = await jose.exportJWK(key.privateKey);
    const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [{ ...privateJwk, kid: key.kid }] }, allowBearer: true });
    await expect(v.verify(bearerRequest(await mint()))).resolves.toBeDefined();
  });

  test('JWKS keys restricted to encryption, or to another algorithm, are not used', async () => {
    for (const restriction of [{ use: 'enc' }, { key_ops: ['encrypt'] }, { alg: 'ES384' }]) {
      const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [{ ...key.publicJwk, ...restriction }] }, allowBearer: true });
      await expectCode(v.verify(bearerRequest(await mint())), 'ERR_JWKS_NO_MATCHING_KEY');
    }
  });
});

describe('claims', () => {
  test('aud as an array is refused, even when it holds only this audience', async () => {
    await expectCode(verify(await mint({ audience: [AUDIENCE] })), 'ERR_TOKEN_AUDIENCE');
    await expectCode(verify(await mint({ audience: [AUDIENCE, 'https://other.test'] })), 'ERR_TOKEN_AUDIENCE');
  });

  test.each(['https://api.test/other', `${AUDIENCE}/`, 'https://API.test/orders', 'https://api.test', ''])('aud %p is refused', async (aud) => {
    await expectCode(verify(await mint({ audience: aud })), 'ERR_TOKEN_AUDIENCE');
  });

  test('a missing aud is refused', async () => {
    await expectCode(verify(await mint({ omit: ['aud'] })), 'ERR_TOKEN_AUDIENCE');
  });

  test.each(['https://issuer.tesu', 'https://issuer.test/', 'https://issuer.tes', 'http://issuer.test', 'https://Issuer.test'])('iss %s is refused', async (iss) => {
    await expectCode(verify(await mint({ issuer: iss })), 'ERR_TOKEN_ISSUER');
  });

  test('expired: refused past the leeway, accepted within it', async () => {
    const now = nowSeconds();
    await expectCode(verify(await mint({ claims: { exp: now - 10 } })), 'ERR_TOKEN_EXPIRED');
    await expectCode(verify(await mint({ claims: { exp: now - 6 } })), 'ERR_TOKEN_EXPIRED');
    await expect(verify(await mint({ claims: { exp: now - 2 } }))).resolves.toBeDefined();
  });

  test('nbf in the future beyond the leeway is refused', async () => {
    const now = nowSeconds();
    await expectCode(verify(await mint({ claims: { nbf: now + 60 } })), 'ERR_TOKEN_NOT_YET_VALID');
    await expect(verify(await mint({ claims: { nbf: now + 2 } }))).resolves.toBeDefined();
  });

  test('iat in the future beyond the leeway is refused', async () => {
    const now = nowSeconds();
    await expectCode(verify(await mint({ claims: { iat: now + 60 } })), 'ERR_TOKEN_IAT');
    await expect(verify(await mint({ claims: { iat: now + 2 } }))).resolves.toBeDefined();
  });

  test('the leeway is configurable', async () => {
    const strict = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, clockToleranceSeconds: 0 });
    await expectCode(strict.verify(bearerRequest(await mint({ claims: { iat: nowSeconds() + 3 } }))), 'ERR_TOKEN_IAT');
  });

  test.each(['exp', 'iat', 'sub', 'client_id', 'jti'])('a missing %s is refused', async (claim) => {
    await expectCode(verify(await mint({ omit: [claim] })), 'ERR_TOKEN_CLAIM_INVALID');
  });

  test.each([
    ['exp', '9999999999'],
    ['iat', null],
    ['nbf', 'soon'],
    ['sub', 42],
    ['client_id', ''],
    ['jti', {}],
    ['scope', ['orders:read']],
    ['cnf', 'x'],
  ])('%s = %p is refused', async (claim, value) => {
    await expectCode(verify(await mint({ claims: { [claim]: value } })), 'ERR_TOKEN_CLAIM_INVALID');
  });

  test('a payload that is not a JSON object is refused', async () => {
    for (const payload of ['[1,2]', 'null', '"x"', '{"iss":']) {
      await expectCode(verify(await rawSign(key, { alg: 'ES256', typ: 'at+jwt', kid: key.kid }, payload)), 'ERR_TOKEN_MALFORMED');
    }
  });
});

describe('scopes', () => {
  test('granted scopes pass', async () => {
    await expect(verify(await mint(), { requiredScopes: ['orders:read', 'orders:write'] })).resolves.toBeDefined();
  });

  test('a missing scope is 403 insufficient_scope with the needed scopes', async () => {
    const err = await expectCode(verify(await mint(), { requiredScopes: ['orders:read', 'orders:admin'] }), 'ERR_TOKEN_SCOPE');
    expect(err).toMatchObject({ status: 403, oauthError: 'insufficient_scope', requiredScopes: ['orders:read', 'orders:admin'] });
  });

  test('scopes match whole words only', async () => {
    await expectCode(verify(await mint({ claims: { scope: 'orders:reader' } }), { requiredScopes: ['orders:read'] }), 'ERR_TOKEN_SCOPE');
    await expectCode(verify(await mint({ omit: ['scope'] }), { requiredScopes: ['orders:read'] }), 'ERR_TOKEN_SCOPE');
  });
});

describe('binding requirement', () => {
  test('a token without cnf is refused unless Bearer tokens are allowed', async () => {
    const strict = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
    const err = await expectCode(strict.verify(bearerRequest(await mint())), 'ERR_TOKEN_UNBOUND');
    expect(err).toMatchObject({ status: 401, oauthError: 'invalid_token' });
  });

  test('a cnf with only a confirmation method we do not check is refused, even with allowBearer', async () => {
    await expectCode(verify(await mint({ claims: { cnf: { jwk: key.publicJwk } } })), 'ERR_BINDING_UNSUPPORTED');
  });
});

describe('format and size', () => {
  test('an oversize token is refused before any key lookup or crypto', async () => {
    const server = await startIssuer(jwksOf(key));
    try {
      const v = createVerifier({ issuer: server.issuer, audience: AUDIENCE, allowBearer: true });
      const token = await mintAccessToken(key, { issuer: server.issuer, claims: { pad: 'x'.repeat(9000) } });
      await expectCode(v.verify(bearerRequest(token)), 'ERR_TOKEN_TOO_LARGE');
      expect(server.hits.size).toBe(0);
      const small = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, maxTokenBytes: 200 });
      await expectCode(small.verify(bearerRequest(await mint())), 'ERR_TOKEN_TOO_LARGE');
    } finally {
      await server.close();
    }
  });

  test('a JWE (five parts) is refused', async () => {
    const jwe = await new jose.EncryptJWT(baseClaims())
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', typ: 'at+jwt' })
      .encrypt(crypto.getRandomValues(new Uint8Array(32)));
    expect(jwe.split('.')).toHaveLength(5);
    await expectCode(verify(jwe), 'ERR_TOKEN_ENCRYPTED');
  });

  test('malformed compact serializations are refused', async () => {
    const token = await mint();
    const [h, p, s] = token.split('.') as [string, string, string];
    const cases = [
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}..${s}`,
      `${h}.${p}.${s}=`,
      `${b64('not json')}.${p}.${s}`,
      `${b64('[1]')}.${p}.${s}`,
      `${h}.${p}.${s.slice(0, -1)}`,
    ];
    for (const bad of cases) await expectCode(verify(bad), 'ERR_TOKEN_MALFORMED');
    // Not even token68 (RFC 9110 §11.2): refused as a malformed header.
    await expectCode(verify(`${h}=.${p}.${s}`), 'ERR_AUTHORIZATION_HEADER');
  });

  test('a non-canonical signature encoding (same bytes, other last character) is refused', async () => {
    const token = await mint();
    const last = token.at(-1) as string;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 64 signature bytes = 86 characters; the last carries 2 bits and 4 unused ones.
    const sibling = alphabet[alphabet.indexOf(last) + 1] as string;
    const variant = token.slice(0, -1) + sibling;
    expect(Buffer.from(variant.split('.')[2] as string, 'base64url')).toEqual(Buffer.from(token.split('.')[2] as string, 'base64url'));
    await expectCode(verify(variant), 'ERR_TOKEN_MALFORMED');
  });

  test('tampered payload or signature is refused', async () => {
    const token = await mint();
    const [h, , s] = token.split('.') as [string, string, string];
    const payload = { ...decodePart(token, 1), scope: 'orders:admin' };
    await expectCode(verify(`${h}.${b64(JSON.stringify(payload))}.${s}`), 'ERR_TOKEN_SIGNATURE');
    const other = await mint();
    await expectCode(verify(`${token.split('.').slice(0, 2).join('.')}.${other.split('.')[2]}`), 'ERR_TOKEN_SIGNATURE');
  });
});

describe('the Authorization header', () => {
  test('missing: ERR_NO_CREDENTIALS (401, no error code in the challenge)', async () => {
    const err = await expectCode(verifier.verify({ method: 'GET', url: AUDIENCE, headers: {} }), 'ERR_NO_CREDENTIALS');
    expect(err.status).toBe(401);
  });

  test('another scheme: ERR_UNSUPPORTED_SCHEME', async () => {
    await expectCode(verifier.verify({ method: 'GET', url: AUDIENCE, headers: { authorization: 'Basic YTpi' } }), 'ERR_UNSUPPORTED_SCHEME');
  });

  test('malformed or duplicated: 400 invalid_request', async () => {
    const token = await mint();
    for (const authorization of ['Bearer', 'Bearer ', 'Bearer a b', 'Bearer "x"', [`Bearer ${token}`, `Bearer ${token}`]]) {
      const err = await expectCode(verifier.verify({ method: 'GET', url: AUDIENCE, headers: { authorization } }), 'ERR_AUTHORIZATION_HEADER');
      expect(err).toMatchObject({ status: 400, oauthError: 'invalid_request' });
    }
  });

  test('a request that is not request-shaped is a VerifierError, not a TypeError', async () => {
    for (const bad of [undefined, null, {}, { method: 'GET', url: AUDIENCE }, { method: 1, url: AUDIENCE, headers: {} }]) {
      const err = await verifier.verify(bad as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifierError);
      expect((err as VerifierError).code).toBe('ERR_REQUEST_INVALID');
    }
  });
});

describe('configuration', () => {
  test('invalid options throw TypeError naming the option', () => {
    expect(() => createVerifier({ issuer: 'not a url', audience: AUDIENCE })).toThrow(/issuer/);
    expect(() => createVerifier({ issuer: ISSUER, audience: '' })).toThrow(/audience/);
    expect(() => createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), jwksUri: 'https://x.test/jwks' })).toThrow(/jwks/);
    expect(() => createVerifier({ issuer: ISSUER, audience: AUDIENCE, maxTokenBytes: -1 })).toThrow(/maxTokenBytes/);
    expect(() => createVerifier({ issuer: ISSUER, audience: AUDIENCE, dpop: { algorithms: ['HS256' as 'ES256'] } })).toThrow(/dpop.algorithms/);
  });
});

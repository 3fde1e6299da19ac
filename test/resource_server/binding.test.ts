// Sender constraint: certificate-bound tokens (RFC 8705 §3) and DPoP-bound tokens (RFC 9449 §4.3, §7).
import { X509Certificate } from 'node:crypto';
import * as jose from 'jose';
import {
  accessTokenHash,
  certificateThumbprint,
  createMemoryReplayStore,
  createRotatingDpopNonce,
  createVerifier,
  jwkThumbprint,
  VerifierError,
  type ReplayStore,
  type Verifier,
  type VerifyRequest,
} from '../../src/resource_server/index.js';
import {
  AUDIENCE,
  ath,
  bearerRequest,
  expectCode,
  jwksOf,
  makeCertificates,
  makeDpopKey,
  makeProof,
  makeSigningKey,
  mintAccessToken,
  nowSeconds,
  rawSign,
  type CertificateFiles,
  type DpopKey,
  type SigningKey,
} from './helpers.js';

const ISSUER = 'https://issuer.test';
const URL_ = `${AUDIENCE}/42`;

let key: SigningKey;
let certA: CertificateFiles;
let certB: CertificateFiles;
let verifier: Verifier;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
  const certs = makeCertificates(['client-a', 'client-b']);
  certA = certs['client-a'] as CertificateFiles;
  certB = certs['client-b'] as CertificateFiles;
  verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
});

function mint(claims: Record<string, unknown>): Promise<string> {
  return mintAccessToken(key, { issuer: ISSUER, claims });
}

describe('certificate-bound tokens (RFC 8705 §3)', () => {
  let token: string;
  beforeAll(async () => {
    token = await mint({ cnf: { 'x5t#S256': certA.thumbprint } });
  });

  test('the thumbprint is base64url SHA-256 of the DER certificate', () => {
    const hex = new X509Certificate(certA.cert).fingerprint256.replace(/:/g, '');
    expect(certificateThumbprint(certA.der)).toBe(Buffer.from(hex, 'hex').toString('base64url'));
    expect(certificateThumbprint(certA.cert)).toBe(certA.thumbprint);
    expect(certificateThumbprint(certA.thumbprint)).toBe(certA.thumbprint);
  });

  test.each(['DER', 'PEM', 'thumbprint'])('the right certificate given as %s is accepted', async (form) => {
    const clientCertificate = form === 'DER' ? certA.der : form === 'PEM' ? certA.cert : certA.thumbprint;
    await expect(verifier.verifyWithBinding(bearerRequest(token, { clientCertificate }))).resolves.toMatchObject({ binding: 'mtls' });
  });

  test('no certificate: ERR_CERTIFICATE_MISSING (401 invalid_token)', async () => {
    const err = await expectCode(verifier.verify(bearerRequest(token)), 'ERR_CERTIFICATE_MISSING');
    expect(err).toMatchObject({ status: 401, oauthError: 'invalid_token', scheme: 'Bearer' });
  });

  test('another certificate: ERR_CERTIFICATE_MISMATCH', async () => {
    await expectCode(verifier.verify(bearerRequest(token, { clientCertificate: certB.der })), 'ERR_CERTIFICATE_MISMATCH');
    await expectCode(verifier.verify(bearerRequest(token, { clientCertificate: certB.cert })), 'ERR_CERTIFICATE_MISMATCH');
  });

  test('garbage as certificate: ERR_CERTIFICATE_INVALID', async () => {
    for (const clientCertificate of ['hello', Buffer.from('hello'), '-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----', Buffer.alloc(0)]) {
      await expectCode(verifier.verify(bearerRequest(token, { clientCertificate })), 'ERR_CERTIFICATE_INVALID');
    }
  });

  test('a certificate-bound token with the DPoP scheme: ERR_DPOP_NOT_BOUND', async () => {
    await expectCode(verifier.verify(bearerRequest(token, { clientCertificate: certA.der }, 'DPoP')), 'ERR_DPOP_NOT_BOUND');
  });

  test('a non-string x5t#S256: ERR_TOKEN_CLAIM_INVALID', async () => {
    const bad = await mint({ cnf: { 'x5t#S256': 1 } });
    await expectCode(verifier.verify(bearerRequest(bad, { clientCertificate: certA.der })), 'ERR_TOKEN_CLAIM_INVALID');
  });
});

describe('DPoP-bound tokens (RFC 9449)', () => {
  let dpopKey: DpopKey;
  let otherKey: DpopKey;
  let token: string;

  beforeAll(async () => {
    dpopKey = await makeDpopKey('ES256');
    otherKey = await makeDpopKey('ES256');
    token = await mint({ cnf: { jkt: dpopKey.jkt } });
  });

  function dpopRequest(proof: string | string[] | undefined, extra: Partial<VerifyRequest> = {}, accessToken = token): VerifyRequest {
    const headers: Record<string, string | string[]> = { authorization: `DPoP ${accessToken}` };
    if (proof !== undefined) headers.dpop = proof;
    return { method: 'GET', url: URL_, headers, ...extra };
  }

  function proof(options: Partial<Parameters<typeof makeProof>[1]> = {}, signer: DpopKey = dpopKey): Promise<string> {
    return makeProof(signer, { htm: 'GET', htu: URL_, accessToken: token, ...options });
  }

  test('jwkThumbprint is RFC 7638 (same as jose) for EC, RSA and OKP keys', async () => {
    for (const alg of ['ES256', 'PS256', 'EdDSA']) {
      const k = await makeDpopKey(alg);
      expect(jwkThumbprint(k.publicJwk as never)).toBe(k.jkt);
    }
    expect(accessTokenHash(token)).toBe(ath(token));
  });

  test('a valid proof is accepted (ES256, PS256, EdDSA keys)', async () => {
    await expect(verifier.verifyWithBinding(dpopRequest(await proof()))).resolves.toMatchObject({ binding: 'dpop' });
    for (const alg of ['PS256', 'EdDSA']) {
      const k = await makeDpopKey(alg);
      const t = await mint({ cnf: { jkt: k.jkt } });
      const p = await makeProof(k, { htm: 'GET', htu: URL_, accessToken: t });
      await expect(verifier.verify(dpopRequest(p, {}, t))).resolves.toBeDefined();
    }
  });

  test('the DPoP scheme name is case-insensitive', async () => {
    const request = dpopRequest(await proof());
    await expect(verifier.verify({ ...request, headers: { ...request.headers, authorization: `dpop ${token}` } })).resolves.toBeDefined();
  });

  test('Bearer scheme with a DPoP-bound token is refused (RFC 9449 §7.2), even with a valid proof', async () => {
    const err = await expectCode(verifier.verify(bearerRequest(token)), 'ERR_DPOP_BOUND_TOKEN_AS_BEARER');
    expect(err).toMatchObject({ status: 401, oauthError: 'invalid_token', scheme: 'DPoP' });
    await expectCode(verifier.verify({ ...bearerRequest(token), url: URL_, headers: { authorization: `Bearer ${token}`, dpop: await proof() } }), 'ERR_DPOP_BOUND_TOKEN_AS_BEARER');
  });

  test('missing proof: ERR_DPOP_PROOF_MISSING (invalid_dpop_proof)', async () => {
    const err = await expectCode(verifier.verify(dpopRequest(undefined)), 'ERR_DPOP_PROOF_MISSING');
    expect(err).toMatchObject({ status: 401, oauthError: 'invalid_dpop_proof', scheme: 'DPoP' });
    await expectCode(verifier.verify(dpopRequest('')), 'ERR_DPOP_PROOF_MISSING');
  });

  test('two proofs: ERR_DPOP_PROOF_MULTIPLE', async () => {
    const [a, b] = [await proof(), await proof()];
    await expectCode(verifier.verify(dpopRequest([a, b])), 'ERR_DPOP_PROOF_MULTIPLE');
    await expectCode(verifier.verify(dpopRequest(`${a}, ${b}`)), 'ERR_DPOP_PROOF_MULTIPLE');
  });

  test.each(['POST', 'get', 'HEAD'])('htm %s for a GET: ERR_DPOP_PROOF_HTM', async (htm) => {
    await expectCode(verifier.verify(dpopRequest(await proof({ htm }))), 'ERR_DPOP_PROOF_HTM');
  });

  test.each([
    `${AUDIENCE}/43`,
    `${URL_}/`,
    'https://other.test/orders/42',
    'http://api.test/orders/42',
    'https://api.test:8443/orders/42',
    '/orders/42',
    'not a url',
  ])('htu %s: ERR_DPOP_PROOF_HTU', async (htu) => {
    await expectCode(verifier.verify(dpopRequest(await proof({ htu }))), 'ERR_DPOP_PROOF_HTU');
  });

  test.each([
    'HTTPS://API.TEST/orders/42',
    'https://api.test:443/orders/42',
    'https://api.test/orders/%34%32',
    'https://api.test/orders/./42',
    'https://api.test/orders/42?page=2',
    'https://api.test/orders/42#frag',
  ])('htu %s matches after RFC 3986 normalization, ignoring query and fragment', async (htu) => {
    await expect(verifier.verify(dpopRequest(await proof({ htu }), { url: `${URL_}?other=query` }))).resolves.toBeDefined();
  });

  test('wrong or missing ath: ERR_DPOP_PROOF_ATH', async () => {
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { ath: ath('another token') } }))), 'ERR_DPOP_PROOF_ATH');
    await expectCode(verifier.verify(dpopRequest(await proof({ omit: ['ath'] }))), 'ERR_DPOP_PROOF_ATH');
  });

  test('a proof by another key (jkt mismatch): ERR_DPOP_KEY_MISMATCH (invalid_token)', async () => {
    const err = await expectCode(verifier.verify(dpopRequest(await proof({}, otherKey))), 'ERR_DPOP_KEY_MISMATCH');
    expect(err.oauthError).toBe('invalid_token');
  });

  test('the bound key in the header but signed by another key: ERR_DPOP_PROOF_SIGNATURE', async () => {
    await expectCode(verifier.verify(dpopRequest(await proof({ signWith: otherKey.privateKey }))), 'ERR_DPOP_PROOF_SIGNATURE');
  });

  test('a replayed proof: ERR_DPOP_PROOF_REPLAYED', async () => {
    const p = await proof();
    await expect(verifier.verify(dpopRequest(p))).resolves.toBeDefined();
    await expectCode(verifier.verify(dpopRequest(p)), 'ERR_DPOP_PROOF_REPLAYED');
  });

  test('a proof that failed another check is not recorded, so it does not burn the jti', async () => {
    const jti = 'reused-after-failure';
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { jti }, htm: 'POST' }))), 'ERR_DPOP_PROOF_HTM');
    await expect(verifier.verify(dpopRequest(await proof({ claims: { jti } })))).resolves.toBeDefined();
  });

  test('iat outside the window: ERR_DPOP_PROOF_IAT', async () => {
    const now = nowSeconds();
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { iat: now - 306 } }))), 'ERR_DPOP_PROOF_IAT');
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { iat: now + 60 } }))), 'ERR_DPOP_PROOF_IAT');
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { iat: String(now) } }))), 'ERR_DPOP_PROOF_IAT');
    await expect(verifier.verify(dpopRequest(await proof({ claims: { iat: now - 290 } })))).resolves.toBeDefined();
    const short = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), dpop: { maxAgeSeconds: 30 } });
    await expectCode(short.verify(dpopRequest(await proof({ claims: { iat: now - 60 } }))), 'ERR_DPOP_PROOF_IAT');
  });

  test.each([['JWT'], ['at+jwt'], [undefined]])('typ %p: ERR_DPOP_PROOF_TYPE', async (typ) => {
    await expectCode(verifier.verify(dpopRequest(await proof({ header: { typ } }))), 'ERR_DPOP_PROOF_TYPE');
  });

  test('alg none, HS256 or not allow-listed: ERR_DPOP_PROOF_ALGORITHM', async () => {
    const claims = { jti: 'x', htm: 'GET', htu: URL_, iat: nowSeconds(), ath: ath(token) };
    for (const alg of ['none', 'HS256', 'RS256', 'ES384']) {
      const header = Buffer.from(JSON.stringify({ alg, typ: 'dpop+jwt', jwk: dpopKey.publicJwk })).toString('base64url');
      const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
      await expectCode(verifier.verify(dpopRequest(`${header}.${body}.${'A'.repeat(43)}`)), 'ERR_DPOP_PROOF_ALGORITHM');
    }
  });

  test('a jwk that is missing, private, symmetric or of the wrong type: ERR_DPOP_PROOF_JWK', async () => {
    const privateJwk = await jose.exportJWK(dpopKey.privateKey);
    const ed = await makeDpopKey('EdDSA');
    const p384 = await makeDpopKey('ES384');
    for (const jwk of [undefined, 'x', privateJwk, { kty: 'oct', k: 'c2VjcmV0' }, ed.publicJwk, p384.publicJwk, { kty: 'EC', crv: 'P-256' }]) {
      await expectCode(verifier.verify(dpopRequest(await proof({ header: { jwk } }))), 'ERR_DPOP_PROOF_JWK');
    }
  });

  test('a jwk that is not a point on the curve: ERR_DPOP_PROOF_JWK', async () => {
    const bogus = { kty: 'EC', crv: 'P-256', x: Buffer.alloc(32, 1).toString('base64url'), y: Buffer.alloc(32, 2).toString('base64url') };
    const t = await mint({ cnf: { jkt: jwkThumbprint(bogus) } });
    const p = await makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: t, header: { jwk: bogus } });
    await expectCode(verifier.verify(dpopRequest(p, {}, t)), 'ERR_DPOP_PROOF_JWK');
  });

  test('crit in the proof, missing jti, a too long jti: ERR_DPOP_PROOF_MALFORMED', async () => {
    const header = { alg: 'ES256', typ: 'dpop+jwt', jwk: dpopKey.publicJwk, crit: ['x'], x: 1 };
    const claims = { jti: 'a', htm: 'GET', htu: URL_, iat: nowSeconds(), ath: ath(token) };
    await expectCode(verifier.verify(dpopRequest(await rawSign(dpopKey, header, claims))), 'ERR_DPOP_PROOF_MALFORMED');
    await expectCode(verifier.verify(dpopRequest(await proof({ omit: ['jti'] }))), 'ERR_DPOP_PROOF_MALFORMED');
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { jti: 'j'.repeat(257) } }))), 'ERR_DPOP_PROOF_MALFORMED');
    await expectCode(verifier.verify(dpopRequest('a.b')), 'ERR_DPOP_PROOF_MALFORMED');
  });

  test('the DPoP scheme with an unbound token: ERR_DPOP_NOT_BOUND', async () => {
    const bearerAllowed = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true });
    const unbound = await mintAccessToken(key, { issuer: ISSUER });
    const p = await makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: unbound });
    await expectCode(bearerAllowed.verify(dpopRequest(p, {}, unbound)), 'ERR_DPOP_NOT_BOUND');
  });

  test('with dpop: false, DPoP-bound tokens are refused', async () => {
    const noDpop = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), dpop: false });
    await expectCode(noDpop.verify(dpopRequest(await proof())), 'ERR_BINDING_UNSUPPORTED');
  });

  test('a token bound both ways needs both the certificate and the proof', async () => {
    const certs = makeCertificates(['both']);
    const cert = certs.both as CertificateFiles;
    const both = await mint({ cnf: { jkt: dpopKey.jkt, 'x5t#S256': cert.thumbprint } });
    const p = () => makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: both });
    await expect(verifier.verifyWithBinding(dpopRequest(await p(), { clientCertificate: cert.der }, both))).resolves.toMatchObject({ binding: 'mtls+dpop' });
    await expectCode(verifier.verify(dpopRequest(await p(), {}, both)), 'ERR_CERTIFICATE_MISSING');
  });

  test('replay records go to the configured store, keyed by key thumbprint and jti, until the window ends', async () => {
    const calls: [string, number][] = [];
    const inner = createMemoryReplayStore();
    const store: ReplayStore = {
      seen: (k, expiresAt) => {
        calls.push([k, expiresAt]);
        return inner.seen(k, expiresAt);
      },
    };
    const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), dpop: { replayStore: store, maxAgeSeconds: 60 } });
    const iat = nowSeconds();
    await v.verify(dpopRequest(await proof({ claims: { jti: 'j-1', iat } })));
    expect(calls).toEqual([[`${dpopKey.jkt}:j-1`, (iat + 60 + 2 * 5) * 1000]]);
  });

  test('a failing replay store is 503 ERR_DPOP_STATE_UNAVAILABLE, never access', async () => {
    const v = createVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      jwks: jwksOf(key),
      dpop: { replayStore: { seen: () => Promise.reject(new Error('redis down')) } },
    });
    const err = await expectCode(v.verify(dpopRequest(await proof())), 'ERR_DPOP_STATE_UNAVAILABLE');
    expect(err.status).toBe(503);
  });

  test('server nonces (RFC 9449 §9): missing or stale → use_dpop_nonce with a fresh DPoP-Nonce; the given one works', async () => {
    let clock = Date.now();
    const nonce = createRotatingDpopNonce({ rotationSeconds: 60, now: () => clock });
    const v = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), dpop: { nonce } });
    const err = await expectCode(v.verify(dpopRequest(await proof())), 'ERR_DPOP_NONCE');
    expect(err).toMatchObject({ status: 401, oauthError: 'use_dpop_nonce' });
    expect(typeof err.dpopNonce).toBe('string');
    await expectCode(v.verify(dpopRequest(await proof({ claims: { nonce: 'made-up' } }))), 'ERR_DPOP_NONCE');
    await expect(v.verify(dpopRequest(await proof({ claims: { nonce: err.dpopNonce } })))).resolves.toBeDefined();
    // One rotation later the previous nonce still works; two rotations later it does not.
    clock += 61_000;
    await expect(v.verify(dpopRequest(await proof({ claims: { nonce: err.dpopNonce } })))).resolves.toBeDefined();
    clock += 61_000;
    await expectCode(v.verify(dpopRequest(await proof({ claims: { nonce: err.dpopNonce } }))), 'ERR_DPOP_NONCE');
  });

  test('an oversize proof is refused before parsing', async () => {
    await expectCode(verifier.verify(dpopRequest(await proof({ claims: { pad: 'x'.repeat(9000) } }))), 'ERR_DPOP_PROOF_MALFORMED');
  });

  test('every failure is a VerifierError', async () => {
    const inputs = [['a.b.c'], [null as unknown as string], [42 as unknown as string]];
    for (const [p] of inputs) {
      const err = await verifier.verify(dpopRequest(p as string)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerifierError);
    }
  });
});

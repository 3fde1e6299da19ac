// The verifier remembers which token strings a key has verified (signature_memo.ts), so that a token
// presented again skips the signature check. These tests attack what that could break: a forged or
// changed token after a genuine one, a key the issuer replaced or withdrew, an expired token, a
// binding that no longer matches, claims mutated by one caller, 16 presentations at once, and the
// bound on memory. How much it saves is measured by `npm run bench -- verifier`, never here.
import { randomUUID, type webcrypto } from 'node:crypto';
import { createJwksCache } from '../../packages/resource-server/src/jwks_cache.js';
import { verificationKeyOf, type VerificationKey } from '../../packages/resource-server/src/jws_signature.js';
import { createSignatureMemo, type SignatureMemo } from '../../packages/resource-server/src/signature_memo.js';
import { verifySignedJws } from '../../packages/resource-server/src/signed_jws.js';
import { createVerifier, type VerifierOptions } from '../../src/resource_server/index.js';
import { AUDIENCE, b64, bearerRequest, expectCode, jwksOf, makeSigningKey, mintAccessToken, startIssuer, type SigningKey, type TestIssuer } from './helpers.js';

const ISSUER = 'https://issuer.test';
const THUMBPRINT = 'A'.repeat(43);

let key: SigningKey;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
});

function localVerifier(extra: Partial<VerifierOptions> = {}) {
  return createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, ...extra });
}

/** The token with one character of segment `index` replaced by another of the alphabet (still canonical). */
function mutateSegment(token: string, index: 0 | 1 | 2): string {
  const segments = token.split('.');
  const segment = segments[index] as string;
  // The first character carries six whole bits, so any other letter keeps the segment canonical.
  segments[index] = (segment[0] === 'A' ? 'B' : 'A') + segment.slice(1);
  return segments.join('.');
}

async function verificationKey(): Promise<VerificationKey> {
  const resolved = verificationKeyOf('ES256', key.publicKey as webcrypto.CryptoKey);
  if (resolved === undefined) throw new Error('no verification key');
  return resolved;
}

describe('the memo itself', () => {
  test('0 entries is no memo: every signature is checked', () => {
    expect(createSignatureMemo(0)).toBeUndefined();
  });

  test('a token is remembered with the key object that verified it, and with no other', async () => {
    const memo = createSignatureMemo(10) as SignatureMemo;
    const first = await verificationKey();
    const second = await verificationKey();
    memo.record('a.b.c', first);
    expect(memo.verifiedWith('a.b.c', first)).toBe(true);
    // The same public key, converted again (as after a JWKS refetch): not the same object, not remembered.
    expect(memo.verifiedWith('a.b.c', second)).toBe(false);
    expect(memo.verifiedWith('a.b.d', first)).toBe(false);
    memo.record('a.b.c', second);
    expect(memo.verifiedWith('a.b.c', second)).toBe(true);
    expect(memo.verifiedWith('a.b.c', first)).toBe(false);
  });

  test('it holds at most its size, the oldest recorded leaving first', async () => {
    const memo = createSignatureMemo(2) as SignatureMemo;
    const k = await verificationKey();
    memo.record('t1', k);
    memo.record('t2', k);
    memo.record('t3', k);
    expect(['t1', 't2', 't3'].map((t) => memo.verifiedWith(t, k))).toEqual([false, true, true]);
    // Recorded again, t2 becomes the newest: t3 leaves before it.
    memo.record('t2', k);
    memo.record('t4', k);
    expect(['t2', 't3', 't4'].map((t) => memo.verifiedWith(t, k))).toEqual([true, false, true]);
  });
});

describe('verifySignedJws with a memo', () => {
  const rules = (memo: SignatureMemo) => ({ maxBytes: 8192, algorithms: new Set(['ES256']), memo });

  test('a signature that verified is recorded under the key it verified with', async () => {
    const memo = createSignatureMemo(10) as SignatureMemo;
    const k = await verificationKey();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    await verifySignedJws(token, rules(memo), async () => k);
    expect(memo.verifiedWith(token, k)).toBe(true);
  });

  test('a signature that did not verify is never recorded', async () => {
    const memo = createSignatureMemo(10) as SignatureMemo;
    const k = await verificationKey();
    const forged = mutateSegment(await mintAccessToken(key, { issuer: ISSUER }), 2);
    await expectCode(verifySignedJws(forged, rules(memo), async () => k), 'ERR_TOKEN_SIGNATURE');
    expect(memo.verifiedWith(forged, k)).toBe(false);
  });

  test('the memo is asked before the signature: a memo saying "verified" is believed, which is why only verifySignedJws records into it', async () => {
    const k = await verificationKey();
    const forged = mutateSegment(await mintAccessToken(key, { issuer: ISSUER }), 2);
    const asked: [string, VerificationKey][] = [];
    const believing: SignatureMemo = { verifiedWith: (compact, used) => (asked.push([compact, used]), true), record: () => undefined };
    await expect(verifySignedJws(forged, rules(believing), async () => k)).resolves.toBeDefined();
    expect(asked).toEqual([[forged, k]]);
  });
});

describe('through the verifier', () => {
  test('a token verified again gives the same claims, each time a new object: one caller mutating its claims changes nothing for the next', async () => {
    const verifier = localVerifier();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    const first = await verifier.verify(bearerRequest(token));
    (first as Record<string, unknown>).sub = 'admin';
    (first as Record<string, unknown>).scope = 'everything';
    const second = await verifier.verify(bearerRequest(token));
    expect(second).not.toBe(first);
    expect(second).toMatchObject({ sub: 'client-a', scope: 'orders:read orders:write' });
  });

  test('after a genuine token, each of its segments changed under the same signature is refused', async () => {
    const verifier = localVerifier();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    await verifier.verify(bearerRequest(token));
    // A changed header may no longer parse; a changed payload or signature never verifies.
    await expect(verifier.verify(bearerRequest(mutateSegment(token, 0)))).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_TOKEN_(SIGNATURE|MALFORMED)$/) });
    await expectCode(verifier.verify(bearerRequest(mutateSegment(token, 1))), 'ERR_TOKEN_SIGNATURE');
    await expectCode(verifier.verify(bearerRequest(mutateSegment(token, 2))), 'ERR_TOKEN_SIGNATURE');
    // A forgery refused once is refused again: nothing of it was remembered.
    await expectCode(verifier.verify(bearerRequest(mutateSegment(token, 2))), 'ERR_TOKEN_SIGNATURE');
    await expectCode(verifier.verify(bearerRequest(mutateSegment(token, 1))), 'ERR_TOKEN_SIGNATURE');
    // Claims of the genuine payload with a new value, under the genuine signature.
    const [header, , signature] = token.split('.');
    const payload = b64(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'admin', client_id: 'client-a', jti: randomUUID(), iat: 1, exp: 4_000_000_000 }));
    await expectCode(verifier.verify(bearerRequest(`${header}.${payload}.${signature}`)), 'ERR_TOKEN_SIGNATURE');
    await expect(verifier.verify(bearerRequest(token))).resolves.toBeDefined();
  });

  test('a remembered token still expires', async () => {
    let clock = Date.now();
    const verifier = localVerifier({ now: () => clock });
    const token = await mintAccessToken(key, { issuer: ISSUER });
    await verifier.verify(bearerRequest(token));
    clock += 301_000 + 5_000;
    await expectCode(verifier.verify(bearerRequest(token)), 'ERR_TOKEN_EXPIRED');
  });

  test('a remembered certificate-bound token still needs its certificate', async () => {
    const verifier = localVerifier({ allowBearer: false });
    const token = await mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { 'x5t#S256': THUMBPRINT } } });
    await verifier.verify(bearerRequest(token, { clientCertificate: THUMBPRINT }));
    await expectCode(verifier.verify(bearerRequest(token, { clientCertificate: `${'B'.repeat(42)}A` })), 'ERR_CERTIFICATE_MISMATCH');
    await expectCode(verifier.verify(bearerRequest(token)), 'ERR_CERTIFICATE_MISSING');
    await expectCode(verifier.verify(bearerRequest(token, { clientCertificate: THUMBPRINT }, 'DPoP')), 'ERR_DPOP_NOT_BOUND');
  });

  test('a remembered token with a scope it lacks is still 403', async () => {
    const verifier = localVerifier();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    await verifier.verify(bearerRequest(token));
    await expectCode(verifier.verify(bearerRequest(token, { requiredScopes: ['orders:delete'] })), 'ERR_TOKEN_SCOPE');
  });

  test('16 presentations at once of a remembered token and of its forgery: all of the one accepted, all of the other refused', async () => {
    const verifier = localVerifier();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    const forged = mutateSegment(token, 2);
    await verifier.verify(bearerRequest(token));
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => verifier.verify(bearerRequest(i % 2 === 0 ? token : forged))));
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 'fulfilled' : 'rejected')));
    for (const r of results.filter((r) => r.status === 'rejected')) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_TOKEN_SIGNATURE' });
  });

  test('16 first presentations at once of a new token and its forgery: the key is imported once per set, so the forgeries meet a remembered genuine token, and are refused', async () => {
    const verifier = localVerifier();
    const token = await mintAccessToken(key, { issuer: ISSUER });
    const forged = mutateSegment(token, 2);
    for (let burst = 0; burst < 2; burst++) {
      const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => verifier.verify(bearerRequest(i % 2 === 0 ? token : forged))));
      expect(results.map((r) => r.status)).toEqual(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 'fulfilled' : 'rejected')));
    }
  });

  test('concurrent first lookups of a key resolve to one key object', async () => {
    const keys = createJwksCache({ jwks: jwksOf(key), http: { fetch: () => Promise.reject(new Error('no network')), timeoutMs: 1000, maxBytes: 1024 }, cooldownMs: 1000, maxAgeMs: 1000, now: Date.now });
    const resolved = await Promise.all(Array.from({ length: 16 }, () => keys.getKey('ES256', key.kid)));
    expect(new Set(resolved).size).toBe(1);
    expect(await keys.getKey('ES256', key.kid)).toBe(resolved[0]);
  });

  test('signatureCacheSize 0 verifies every presentation the same way; a negative, fractional or non-number size is a TypeError', async () => {
    const verifier = localVerifier({ signatureCacheSize: 0 });
    const token = await mintAccessToken(key, { issuer: ISSUER });
    for (let i = 0; i < 3; i++) await expect(verifier.verify(bearerRequest(token))).resolves.toBeDefined();
    await expectCode(verifier.verify(bearerRequest(mutateSegment(token, 2))), 'ERR_TOKEN_SIGNATURE');
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10']) {
      expect(() => localVerifier({ signatureCacheSize: bad as number })).toThrow(/signatureCacheSize/);
    }
  });
});

describe('keys the issuer replaces or withdraws', () => {
  let issuer: TestIssuer;
  let clock: number;

  beforeEach(async () => {
    issuer = await startIssuer(jwksOf(key));
    clock = Date.now();
  });

  afterEach(async () => {
    await issuer.close();
  });

  const remote = () => createVerifier({ issuer: issuer.issuer, audience: AUDIENCE, allowBearer: true, jwksMaxAgeMs: 60_000, now: () => clock });

  test('another key published under the same kid: the remembered token is checked against it, and refused', async () => {
    const verifier = remote();
    const token = await mintAccessToken(key, { issuer: issuer.issuer });
    await verifier.verify(bearerRequest(token));
    const impostor = await makeSigningKey('ES256', key.kid);
    issuer.jwks = jwksOf(impostor);
    clock += 61_000;
    await expectCode(verifier.verify(bearerRequest(token)), 'ERR_TOKEN_SIGNATURE');
    expect(issuer.hits.get('/jwks')).toBe(2);
  });

  test('the key withdrawn from the set: the remembered token is refused', async () => {
    const verifier = remote();
    const token = await mintAccessToken(key, { issuer: issuer.issuer });
    await verifier.verify(bearerRequest(token));
    issuer.jwks = jwksOf(await makeSigningKey('ES256'));
    clock += 61_000;
    await expectCode(verifier.verify(bearerRequest(token)), 'ERR_JWKS_NO_MATCHING_KEY');
  });

  test('the same key fetched again: the token verifies (against the new key object) and is remembered again', async () => {
    const verifier = remote();
    const token = await mintAccessToken(key, { issuer: issuer.issuer });
    await verifier.verify(bearerRequest(token));
    clock += 61_000;
    await expect(verifier.verify(bearerRequest(token))).resolves.toBeDefined();
    await expect(verifier.verify(bearerRequest(token))).resolves.toBeDefined();
    expect(issuer.hits.get('/jwks')).toBe(2);
  });
});

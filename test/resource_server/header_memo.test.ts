// The verifier remembers the protected headers of tokens whose signature verified (header_memo.ts),
// so that the next token under the same header skips decoding it. These tests attack what that could
// break: a header remembered from a genuine token reused by a forged one, headers a caller makes up
// filling the memo, a header rule (alg, crit, kid, typ) skipped because the header was remembered,
// one caller changing the shared header, and the bound on memory. How much it saves is measured by
// `npm run bench -- verifier`, never here.
import type { webcrypto } from 'node:crypto';
import * as jose from 'jose';
import { createHeaderMemo, type HeaderMemo } from '../../packages/resource-server/src/header_memo.js';
import { verificationKeyOf } from '../../packages/resource-server/src/jws_signature.js';
import { verifySignedJws } from '../../packages/resource-server/src/signed_jws.js';
import { createVerifier } from '../../src/resource_server/index.js';
import { AUDIENCE, b64, bearerRequest, expectCode, hmacJws, jwksOf, makeSigningKey, mintAccessToken, type SigningKey } from './helpers.js';

const ISSUER = 'https://issuer.test';

let key: SigningKey;
let otherKey: SigningKey;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
  otherKey = await makeSigningKey('ES256');
});

/** A verifier that checks every signature, so that only the header memo is at work. */
function verifier() {
  return createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, signatureCacheSize: 0 });
}

const headerOf = (token: string) => token.slice(0, token.indexOf('.'));
const decodedPayload = (token: string) => Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8');

describe('the memo itself', () => {
  test('remembers a header under its exact segment, frozen all the way down', () => {
    const memo = createHeaderMemo(4);
    const header = { alg: 'ES256', typ: 'at+jwt', kid: 'k1', nested: { a: [1] } };
    memo.record('seg', header);
    const kept = memo.headerOf('seg') as typeof header;
    expect(kept).toEqual(header);
    expect(Object.isFrozen(kept)).toBe(true);
    expect(Object.isFrozen(kept.nested)).toBe(true);
    expect(Object.isFrozen(kept.nested.a)).toBe(true);
    expect(memo.headerOf('seg2')).toBeUndefined();
  });

  test('holds at most its size, the oldest recorded leaving first', () => {
    const memo = createHeaderMemo(2);
    for (const segment of ['h1', 'h2', 'h3']) memo.record(segment, { alg: segment });
    expect(['h1', 'h2', 'h3'].map((segment) => memo.headerOf(segment) !== undefined)).toEqual([false, true, true]);
  });
});

describe('the verifier with remembered headers', () => {
  test('a token forged under the header of a genuine one is refused, every time', async () => {
    const v = verifier();
    const genuine = await mintAccessToken(key, { issuer: ISSUER });
    await expect(v.verify(bearerRequest(genuine))).resolves.toMatchObject({ iss: ISSUER });
    // Same header segment (remembered), claims and signature of another key.
    const forged = await mintAccessToken(otherKey, { issuer: ISSUER, header: { kid: key.kid } });
    expect(headerOf(forged)).toBe(headerOf(genuine));
    for (let i = 0; i < 3; i++) await expectCode(v.verify(bearerRequest(forged)), 'ERR_TOKEN_SIGNATURE');
    // The genuine header with the forged token's payload and signature: still the signature.
    const spliced = `${headerOf(genuine)}.${forged.split('.')[1]}.${forged.split('.')[2]}`;
    await expectCode(v.verify(bearerRequest(spliced)), 'ERR_TOKEN_SIGNATURE');
    await expect(v.verify(bearerRequest(genuine))).resolves.toMatchObject({ iss: ISSUER });
  });

  test('only headers of tokens whose signature verified are recorded: 64 made-up headers record nothing', async () => {
    const memo = createHeaderMemo(4);
    const recorded: string[] = [];
    const watched: HeaderMemo = { headerOf: (segment) => memo.headerOf(segment), record: (segment, header) => { recorded.push(segment); memo.record(segment, header); } };
    const rules = { maxBytes: 8192, algorithms: new Set(['ES256']), headers: watched };
    const verificationKey = verificationKeyOf('ES256', key.publicKey as webcrypto.CryptoKey)!;
    for (let i = 0; i < 64; i++) {
      const fake = await mintAccessToken(otherKey, { issuer: ISSUER, header: { kid: key.kid, x: i } });
      await expectCode(verifySignedJws(fake, rules, async () => verificationKey), 'ERR_TOKEN_SIGNATURE');
    }
    expect(recorded).toEqual([]);
    const genuine = await mintAccessToken(key, { issuer: ISSUER });
    await verifySignedJws(genuine, rules, async () => verificationKey);
    expect(recorded).toEqual([headerOf(genuine)]);
    expect(memo.headerOf(headerOf(genuine))).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: key.kid });
  });

  test('the header rules apply to a remembered header on every token', async () => {
    const v = verifier();
    const genuine = await mintAccessToken(key, { issuer: ISSUER });
    await v.verify(bearerRequest(genuine));
    // A different header is a different segment: each one's rules are checked on its own.
    await expectCode(v.verify(bearerRequest(await mintAccessToken(key, { issuer: ISSUER, header: { typ: 'JWT' } }))), 'ERR_TOKEN_TYPE');
    const critical = await new jose.CompactSign(new TextEncoder().encode(decodedPayload(genuine)))
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: key.kid, crit: ['ext'], ext: 1 })
      .sign(key.privateKey, { crit: { ext: true } });
    await expectCode(v.verify(bearerRequest(critical)), 'ERR_TOKEN_CRIT');
    await expectCode(v.verify(bearerRequest(hmacJws({ alg: 'HS256', typ: 'at+jwt', kid: key.kid }, { iss: ISSUER }, new Uint8Array(32)))), 'ERR_TOKEN_ALGORITHM');
    // The remembered header, with a payload that breaks a claim rule: the claims are still checked.
    const expired = await mintAccessToken(key, { issuer: ISSUER, claims: { exp: 1, iat: 0 } });
    expect(headerOf(expired)).toBe(headerOf(genuine));
    await expectCode(v.verify(bearerRequest(expired)), 'ERR_TOKEN_EXPIRED');
  });

  test('a non-canonical spelling of a remembered header segment is refused as malformed', async () => {
    const v = verifier();
    // A header whose JSON is not a multiple of 3 bytes long: its segment's last character has unused bits.
    let genuine = '';
    for (let pad = 0; pad < 3 && (genuine === '' || headerOf(genuine).length % 4 === 0); pad++) {
      genuine = await mintAccessToken(key, { issuer: ISSUER, header: { pad: 'x'.repeat(pad) } });
    }
    await v.verify(bearerRequest(genuine));
    const segment = headerOf(genuine);
    expect(segment.length % 4).not.toBe(0);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(segment[segment.length - 1] as string);
    const respelled = segment.slice(0, -1) + alphabet[last | 1];
    expect(Buffer.from(respelled, 'base64url').equals(Buffer.from(segment, 'base64url'))).toBe(true);
    await expectCode(v.verify(bearerRequest(respelled + genuine.slice(segment.length))), 'ERR_TOKEN_MALFORMED');
  });

  test('16 verifications at once, genuine and forged under one header, each get their own answer', async () => {
    const v = verifier();
    const genuine = await Promise.all(Array.from({ length: 8 }, () => mintAccessToken(key, { issuer: ISSUER })));
    const forged = await Promise.all(Array.from({ length: 8 }, () => mintAccessToken(otherKey, { issuer: ISSUER, header: { kid: key.kid } })));
    const outcomes = await Promise.allSettled([...genuine, ...forged].map((token) => v.verify(bearerRequest(token))));
    expect(outcomes.slice(0, 8).every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    expect(outcomes.slice(8).map((outcome) => outcome.status === 'rejected' && (outcome.reason as { code: string }).code)).toEqual(Array(8).fill('ERR_TOKEN_SIGNATURE'));
  });

  test('a header made of JSON that is not an object is refused, remembered or not', async () => {
    const v = verifier();
    const genuine = await mintAccessToken(key, { issuer: ISSUER });
    await v.verify(bearerRequest(genuine));
    for (const header of ['[]', 'null', '"x"', '{']) {
      await expectCode(v.verify(bearerRequest(`${b64(header)}${genuine.slice(headerOf(genuine).length)}`)), 'ERR_TOKEN_MALFORMED');
    }
  });
});

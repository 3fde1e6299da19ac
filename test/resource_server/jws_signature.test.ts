// The signature step the verifier hand-writes (node:crypto instead of jose's WebCrypto): every
// algorithm it can be configured with accepts what jose signs and refuses every mutation of it, the
// R || S → DER re-encoding agrees with node:crypto's own, and no second spelling of a signature
// (DER, padded, truncated) verifies.
import { constants, createPublicKey, generateKeyPairSync, randomUUID, sign as nodeSign, verify as nodeVerify, type KeyObject, type webcrypto } from 'node:crypto';
import * as jose from 'jose';
import { SUPPORTED_ALGORITHMS, type SupportedAlgorithm } from '../../packages/resource-server/src/algorithms.js';
import { ecdsaSignatureToDer, isValidSignature, verificationKeyOf, type VerificationKey } from '../../packages/resource-server/src/jws_signature.js';
import { createVerifier } from '../../src/resource_server/index.js';
import { ath, AUDIENCE, b64, bearerRequest, expectCode, jwksOf, makeSigningKey, mintAccessToken } from './helpers.js';

const ISSUER = 'https://issuer.test';

interface Signed {
  readonly signingInput: Buffer;
  readonly signature: Buffer;
  readonly key: VerificationKey;
}

/** A compact JWS signed by jose with a fresh key of `alg`, split for the signature step. */
async function signedBy(alg: SupportedAlgorithm): Promise<Signed & { token: string; publicKey: jose.CryptoKey }> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  const token = await new jose.CompactSign(Buffer.from('{"sub":"a"}')).setProtectedHeader({ alg }).sign(privateKey);
  const at = token.lastIndexOf('.');
  const key = verificationKeyOf(alg, publicKey as webcrypto.CryptoKey);
  if (key === undefined) throw new Error(`${alg}: no verification key`);
  return { token, publicKey, key, signingInput: Buffer.from(token.slice(0, at), 'latin1'), signature: Buffer.from(token.slice(at + 1), 'base64url') };
}

describe('every supported algorithm', () => {
  test.each(SUPPORTED_ALGORITHMS)('%s: jose\'s signature verifies, and flipping any one bit of the signature or the input does not', async (alg) => {
    const signed = await signedBy(alg);
    expect(isValidSignature(alg, signed.key, signed.signingInput, signed.signature)).toBe(true);
    for (let i = 0; i < signed.signature.length; i++) {
      const mutated = Buffer.from(signed.signature);
      mutated[i]! ^= 1 << (i % 8);
      expect(isValidSignature(alg, signed.key, signed.signingInput, mutated)).toBe(false);
    }
    for (let i = 0; i < signed.signingInput.length; i += 7) {
      const mutated = Buffer.from(signed.signingInput);
      mutated[i]! ^= 0x01;
      expect(isValidSignature(alg, signed.key, mutated, signed.signature)).toBe(false);
    }
  });

  test.each(SUPPORTED_ALGORITHMS)('%s: an empty, truncated, extended or all-zero signature is refused (no throw)', async (alg) => {
    const { key, signingInput, signature } = await signedBy(alg);
    for (const bad of [Buffer.alloc(0), signature.subarray(0, signature.length - 1), Buffer.concat([signature, Buffer.from([0])]), Buffer.concat([Buffer.from([0]), signature]), Buffer.alloc(signature.length)]) {
      expect(isValidSignature(alg, key, signingInput, bad)).toBe(false);
    }
  });

  test('a key is used only with the algorithm it was resolved for', async () => {
    const es256 = await signedBy('ES256');
    const rs = await signedBy('RS256');
    // PS256 and RS256 take the same RSA key: the key resolved for RS256 does not verify as PS256.
    const ps = await signedBy('PS256');
    expect(isValidSignature('PS256', rs.key, ps.signingInput, ps.signature)).toBe(false);
    expect(isValidSignature('RS256', ps.key, rs.signingInput, rs.signature)).toBe(false);
    expect(isValidSignature('ES384', es256.key, es256.signingInput, es256.signature)).toBe(false);
    // EdDSA and Ed25519 are one scheme under two names; each key is still tied to its own name.
    const ed = await signedBy('Ed25519');
    expect(isValidSignature('EdDSA', ed.key, ed.signingInput, ed.signature)).toBe(false);
  });
});

describe('which keys become verification keys', () => {
  test('a key of another type or curve than the algorithm needs is not one', async () => {
    const p384 = (await jose.generateKeyPair('ES384', { extractable: true })).publicKey as webcrypto.CryptoKey;
    const rsa = (await jose.generateKeyPair('RS256', { extractable: true })).publicKey as webcrypto.CryptoKey;
    const ed = (await jose.generateKeyPair('Ed25519', { extractable: true })).publicKey as webcrypto.CryptoKey;
    expect(verificationKeyOf('ES256', p384)).toBeUndefined();
    expect(verificationKeyOf('ES256', rsa)).toBeUndefined();
    expect(verificationKeyOf('RS256', ed)).toBeUndefined();
    expect(verificationKeyOf('EdDSA', p384)).toBeUndefined();
    expect(verificationKeyOf('ES384', p384)).toBeDefined();
  });

  test('an RSA key shorter than 2048 bits is not one, for RS and PS alike (RFC 7518 §3.3, §3.5)', async () => {
    for (const [bits, usable] of [[1024, false], [2047, false], [2048, true]] as const) {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
      for (const alg of ['RS256', 'PS256'] as const) {
        const imported = await jose.importJWK(publicKey.export({ format: 'jwk' }) as jose.JWK, alg, { extractable: true });
        expect(verificationKeyOf(alg, imported as webcrypto.CryptoKey) !== undefined).toBe(usable);
      }
    }
  });

  test('a DPoP proof signed with a 1024-bit RSA key it carries is refused: ERR_DPOP_PROOF_JWK, though its signature is valid', async () => {
    const issuerKey = await makeSigningKey('ES256');
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = publicKey.export({ format: 'jwk' }) as jose.JWK;
    const token = await mintAccessToken(issuerKey, { issuer: ISSUER, claims: { cnf: { jkt: await jose.calculateJwkThumbprint(jwk) } } });
    // jose will not sign with such a key: node:crypto signs the proof (RFC 7518 §3.5 PS256).
    const input = `${b64(JSON.stringify({ alg: 'PS256', typ: 'dpop+jwt', jwk }))}.${b64(JSON.stringify({ jti: randomUUID(), htm: 'GET', htu: AUDIENCE, iat: Math.floor(Date.now() / 1000), ath: ath(token) }))}`;
    const signature = nodeSign('sha256', Buffer.from(input), { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
    expect(nodeVerify('sha256', Buffer.from(input), { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature)).toBe(true);
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(issuerKey) });
    const request = { method: 'GET', url: AUDIENCE, headers: { authorization: `DPoP ${token}`, dpop: `${input}.${b64(signature)}` } };
    await expectCode(verifier.verify(request), 'ERR_DPOP_PROOF_JWK');
  });

  test('a private key, or a public key that is not extractable, is not one', async () => {
    const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
    expect(verificationKeyOf('ES256', privateKey as webcrypto.CryptoKey)).toBeUndefined();
    const jwk = await jose.exportJWK((await jose.generateKeyPair('ES256', { extractable: true })).publicKey);
    const hidden = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    expect(verificationKeyOf('ES256', hidden)).toBeUndefined();
  });
});

describe('ECDSA: R || S as DER', () => {
  const CURVES = [
    { alg: 'ES256', curve: 'prime256v1', hash: 'sha256', size: 32 },
    { alg: 'ES384', curve: 'secp384r1', hash: 'sha384', size: 48 },
    { alg: 'ES512', curve: 'secp521r1', hash: 'sha512', size: 66 },
  ] as const;

  test.each(CURVES)('$alg: the DER form equals node:crypto\'s for 600 signatures (leading zeros and high bits included)', ({ curve, hash, size }) => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
    let leadingZero = 0;
    let highBit = 0;
    for (let i = 0; i < 600; i++) {
      const data = Buffer.from(`message ${i}`);
      // One signature, in both encodings: node:crypto converts its own DER to R || S.
      const der = nodeSign(hash, data, privateKey);
      const p1363 = derToP1363(der, size);
      expect(Buffer.from(ecdsaSignatureToDer(p1363, size))).toEqual(der);
      if (p1363[0] === 0 || p1363[size] === 0) leadingZero++;
      if ((p1363[0]! & 0x80) !== 0 || (p1363[size]! & 0x80) !== 0) highBit++;
    }
    // The cases the encoding branches on did occur (P-521's top byte is 0 or 1, so it never has the high bit).
    expect(leadingZero).toBeGreaterThan(0);
    if (size !== 66) expect(highBit).toBeGreaterThan(0);
  });

  test('R or S of zero, and R or S at or above the group order, do not verify', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const key = { alg: 'ES256' as const, key: publicKey };
    const data = Buffer.from('input');
    const good = derToP1363(nodeSign('sha256', data, privateKey), 32);
    expect(isValidSignature('ES256', key, data, good)).toBe(true);
    const order = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
    const s = good.subarray(32);
    for (const r of [Buffer.alloc(32), order, Buffer.alloc(32, 0xff)]) {
      expect(isValidSignature('ES256', key, data, Buffer.concat([r, s]))).toBe(false);
      expect(isValidSignature('ES256', key, data, Buffer.concat([s, r]))).toBe(false);
    }
    // R + n is congruent to R, as a 33-byte value: it does not fit R || S and is refused by length.
    expect(isValidSignature('ES256', key, data, Buffer.concat([Buffer.from([1]), good]))).toBe(false);
  });

  test('a DER-encoded ECDSA signature in a JWS (another spelling of the same signature) is refused', async () => {
    const key = await makeSigningKey('ES256');
    const token = await mintAccessToken(key, { issuer: ISSUER });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const der = ecdsaSignatureToDer(Buffer.from(signature, 'base64url'), 32);
    const publicKey: KeyObject = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
    // It is the same signature: node:crypto accepts the DER form itself.
    expect(nodeVerify('sha256', Buffer.from(`${header}.${payload}`), publicKey, der)).toBe(true);
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true });
    await expectCode(verifier.verify(bearerRequest(`${header}.${payload}.${b64(der)}`)), 'ERR_TOKEN_SIGNATURE');
    await expect(verifier.verify(bearerRequest(token))).resolves.toMatchObject({ sub: 'client-a' });
  });
});

describe('through the verifier', () => {
  test.each(SUPPORTED_ALGORITHMS)('%s: a token is accepted when configured, and refused with one signature bit flipped', async (alg) => {
    const key = await makeSigningKey(alg);
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key), algorithms: [alg], allowBearer: true });
    const token = await mintAccessToken(key, { issuer: ISSUER });
    await expect(verifier.verify(bearerRequest(token))).resolves.toMatchObject({ iss: ISSUER });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const bytes = Buffer.from(signature, 'base64url');
    bytes[bytes.length >> 1]! ^= 0x10;
    await expectCode(verifier.verify(bearerRequest(`${header}.${payload}.${b64(bytes)}`)), 'ERR_TOKEN_SIGNATURE');
  });
});

/** node:crypto's DER ECDSA signature as R || S: the other direction, parsed here as the reference. */
function derToP1363(der: Buffer, size: number): Buffer {
  // SEQUENCE (short or 0x81 long form), then two INTEGERs.
  let at = der[1] === 0x81 ? 3 : 2;
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    const length = der[at + 1]!;
    let value = der.subarray(at + 2, at + 2 + length);
    while (value.length > size && value[0] === 0) value = value.subarray(1);
    parts.push(Buffer.concat([Buffer.alloc(size - value.length), value]));
    at += 2 + length;
  }
  return Buffer.concat(parts);
}

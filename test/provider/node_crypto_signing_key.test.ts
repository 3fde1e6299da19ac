// The ES256 key oidc-provider signs access tokens with (node:crypto through ExternalSigningKey): its
// signatures are JWS ES256 signatures any verifier accepts, its public members are the JWK's, and the
// DER → R || S conversion agrees with node:crypto's own for every shape of integer.
import { generateKeyPairSync, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { compactVerify, exportJWK, importJWK, type JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import { joseEcdsaSignature, signingKeyOf } from '../../src/provider/node_crypto_signing_key.js';

async function privateJwk(type: 'ec' | 'ed25519', alg: string): Promise<JWK> {
  const { privateKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { ...(await exportJWK(privateKey)), alg, kid: `kid-${alg}` };
}

describe('signingKeyOf', () => {
  test('an ES256 JWK becomes an ExternalSigningKey whose signatures verify as ES256 JWS (R || S, 64 bytes) with the public JWK, 200 times', async () => {
    const jwk = await privateJwk('ec', 'ES256');
    const key = signingKeyOf(jwk) as ExternalSigningKey;
    expect(key).toBeInstanceOf(ExternalSigningKey);
    expect({ kid: key.kid, alg: key.alg, kty: key.kty, crv: key.crv, x: key.x, y: key.y, use: key.use }).toEqual({ kid: 'kid-ES256', alg: 'ES256', kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, use: 'sig' });
    const { x, y, crv, kty } = jwk;
    const publicKey = await importJWK({ x, y, crv, kty }, 'ES256');
    for (let i = 0; i < 200; i++) {
      const input = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from(`{"sub":"s${i}"}`).toString('base64url')}`;
      const signature = Buffer.from(await key.sign(Buffer.from(input)));
      expect(signature).toHaveLength(64);
      const verified = await compactVerify(`${input}.${signature.toString('base64url')}`, publicKey);
      expect(new TextDecoder().decode(verified.payload)).toBe(`{"sub":"s${i}"}`);
    }
  });

  test('refuses to be relabelled for another algorithm', async () => {
    const key = signingKeyOf(await privateJwk('ec', 'ES256')) as unknown as { alg: string };
    expect(() => { key.alg = 'ES384'; }).toThrow('an ES256 key cannot sign ES384');
  });

  test('any other key stays a JWK (signed by jose as before)', async () => {
    const jwk = await privateJwk('ed25519', 'EdDSA');
    expect(signingKeyOf(jwk)).toBe(jwk);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const p384 = { ...(await exportJWK(privateKey)), alg: 'ES384' };
    expect(signingKeyOf(p384)).toBe(p384);
    // A public ES256 JWK cannot sign: it stays what it is (oidc-provider refuses it as a signing key).
    const { d: _d, ...publicOnly } = await privateJwk('ec', 'ES256');
    expect(signingKeyOf(publicOnly)).toBe(publicOnly);
  });
});

describe('joseEcdsaSignature (DER → R || S)', () => {
  test.each([
    ['P-256', 'sha256', 32],
    ['P-384', 'sha384', 48],
    ['P-521', 'sha512', 66],
  ] as const)('%s: equals node:crypto\'s ieee-p1363 form of the same signature, 500 signatures (short integers and 0x00 prefixes included)', (curve, hash, size) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
    let shortIntegers = 0;
    for (let i = 0; i < 500; i++) {
      const data = Buffer.from(`input ${i}`);
      const der = nodeSign(hash, data, privateKey);
      const jose = Buffer.from(joseEcdsaSignature(der, size));
      expect(jose).toHaveLength(2 * size);
      // node:crypto verifies R || S with dsaEncoding ieee-p1363: the same signature, re-encoded right.
      expect(nodeVerify(hash, data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      if (jose[0] === 0 || jose[size] === 0) shortIntegers++;
    }
    expect(shortIntegers).toBeGreaterThan(0);
  });

  test('anything but exactly SEQUENCE { INTEGER, INTEGER } throws instead of producing a signature', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = nodeSign('sha256', Buffer.from('x'), privateKey);
    const mutate = (change: (copy: Buffer) => Buffer) => () => joseEcdsaSignature(change(Buffer.from(der)), 32);
    expect(mutate((b) => { b[0] = 0x31; return b; })).toThrow('not a DER SEQUENCE');
    expect(mutate((b) => { b[1] = b[1]! + 1; return b; })).toThrow('does not match');
    expect(mutate((b) => Buffer.concat([b, Buffer.from([0])]))).toThrow('does not match');
    expect(mutate((b) => { b[2] = 0x03; return b; })).toThrow('two DER INTEGERs');
    expect(mutate((b) => b.subarray(0, b.length - 1))).toThrow();
    // An integer longer than the curve allows.
    const long = Buffer.concat([Buffer.from([0x30, 2 + 33 + 2 + 1, 0x02, 33, 0x01]), Buffer.alloc(32, 0xff), Buffer.from([0x02, 1, 1])]);
    expect(() => joseEcdsaSignature(long, 32)).toThrow('longer than the curve');
  });
});

import { generateKeyPairSync } from 'node:crypto';
import { compactVerify, exportJWK, importJWK, type JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import { signingKeyOf } from '../../src/provider/node_crypto_signing_key.js';

/** The ES256 key oidc-provider signs with through ExternalSigningKey: a JWS any verifier accepts, with the public members oidc-provider publishes. */

async function privateJwk(type: 'ec' | 'ed25519', alg: string): Promise<JWK> {
  const { privateKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { ...(await exportJWK(privateKey)), alg, kid: `kid-${alg}` };
}

describe('signingKeyOf', () => {
  test('an ES256 JWK becomes an ExternalSigningKey whose signatures verify as ES256 JWS (r‖s, 64 bytes) with the public JWK', async () => {
    const jwk = await privateJwk('ec', 'ES256');
    const key = signingKeyOf(jwk) as ExternalSigningKey;
    expect(key).toBeInstanceOf(ExternalSigningKey);
    expect({ kid: key.kid, alg: key.alg, kty: key.kty, crv: key.crv, x: key.x, y: key.y, use: key.use }).toEqual({ kid: 'kid-ES256', alg: 'ES256', kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, use: 'sig' });
    const input = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from('{"sub":"s"}').toString('base64url')}`;
    const signature = Buffer.from(await key.sign(Buffer.from(input)));
    expect(signature).toHaveLength(64);
    const { x, y, crv, kty } = jwk;
    const verified = await compactVerify(`${input}.${signature.toString('base64url')}`, await importJWK({ x, y, crv, kty }, 'ES256'));
    expect(new TextDecoder().decode(verified.payload)).toBe('{"sub":"s"}');
  });

  test('refuses to be relabelled for another algorithm', async () => {
    const key = signingKeyOf(await privateJwk('ec', 'ES256')) as unknown as { alg: string };
    expect(() => { key.alg = 'ES384'; }).toThrow('an ES256 key cannot sign ES384');
  });

  test('any other key stays a JWK (signed by jose as before)', async () => {
    const jwk = await privateJwk('ed25519', 'EdDSA');
    expect(signingKeyOf(jwk)).toBe(jwk);
  });
});

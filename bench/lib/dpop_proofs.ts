import { createHash, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';

/**
 * DPoP proofs (RFC 9449 §4.2) signed with node:crypto's synchronous ES256, about 30 µs each, so that a
 * pool for a whole run is made before the clock starts and the load generator does no signing while
 * it measures.
 */
export interface DpopSigner {
  /** RFC 7638 thumbprint of the public key: the `cnf.jkt` a bound token must carry. */
  thumbprint: string;
  proof(htm: string, htu: string): string;
}

export function createDpopSigner(): DpopSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' }) as { crv: string; kty: string; x: string; y: string };
  const publicJwk = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  const thumbprint = createHash('sha256').update(JSON.stringify(publicJwk)).digest('base64url');
  const header = segment({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk });
  return {
    thumbprint,
    proof(htm, htu) {
      const payload = segment({ htm, htu, iat: Math.floor(Date.now() / 1000), jti: randomUUID() });
      return `${header}.${payload}.${signEs256(privateKey, `${header}.${payload}`)}`;
    },
  };
}

function segment(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function signEs256(key: KeyObject, input: string): string {
  return sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
}

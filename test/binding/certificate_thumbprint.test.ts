import { createHash, X509Certificate } from 'node:crypto';
import { thumbprintOf } from '../../src/binding/certificate_thumbprint.js';
import { createEphemeralPki, issueClientCertificate } from '../../src/keys/dev_pki.js';
import { opensslThumbprint } from './tls_fixture.js';

describe('thumbprintOf (RFC 8705 §3.1 x5t#S256)', () => {
  it('equals base64url(SHA-256(DER)) as computed by openssl', async () => {
    const pki = await createEphemeralPki({ clientNames: ['alpha'] });
    const selfSigned = await issueClientCertificate(pki, 'solo', { selfSigned: true });
    for (const pem of [pki.ca.certificatePem, pki.server.certificatePem, pki.clients.alpha!.certificatePem, selfSigned.certificatePem]) {
      expect(thumbprintOf(new X509Certificate(pem).raw)).toBe(opensslThumbprint(pem));
    }
  });

  it('is 43 unpadded base64url characters', () => {
    const thumbprint = thumbprintOf(Buffer.from('any bytes at all'));
    expect(thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(thumbprint, 'base64url')).toEqual(createHash('sha256').update('any bytes at all').digest());
  });

  it('accepts a plain Uint8Array as well as a Buffer', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    expect(thumbprintOf(bytes)).toBe(thumbprintOf(Buffer.from(bytes)));
  });
});

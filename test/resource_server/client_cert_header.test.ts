// Client certificates forwarded by a trusted proxy: RFC 9440 Client-Cert and nginx X-SSL-Client-Cert.
import { createClientCertificateHeaderReader, VerifierError } from '../../src/resource_server/index.js';
import { makeCertificates, type CertificateFiles } from './helpers.js';

let cert: CertificateFiles;
beforeAll(() => {
  cert = makeCertificates(['client'])['client'] as CertificateFiles;
});

const rfc9440 = createClientCertificateHeaderReader({ trustedProxies: ['127.0.0.1', '10.1.0.0/16', '::1', 'fd00::/8'] });
const nginx = createClientCertificateHeaderReader({ trustedProxies: ['127.0.0.1'], header: 'x-ssl-client-cert' });

function expectMalformed(fn: () => unknown): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(VerifierError);
  expect((err as VerifierError).code).toBe('ERR_CLIENT_CERT_HEADER');
  expect((err as VerifierError).status).toBe(400);
}

test('RFC 9440 byte sequence from a trusted proxy gives the certificate thumbprint', () => {
  const header = `:${cert.der.toString('base64')}:`;
  for (const address of ['127.0.0.1', '::ffff:127.0.0.1', '10.1.200.3', '::1', 'fd12::5']) {
    expect(rfc9440({ 'client-cert': header }, address)).toEqual({ trusted: true, thumbprint: cert.thumbprint });
  }
  // RFC 8941 §4.2.7: padding may be missing.
  expect(rfc9440({ 'client-cert': `:${cert.der.toString('base64').replace(/=+$/, '')}:` }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: cert.thumbprint });
});

test('from anyone else the header is ignored, even a malformed one', () => {
  for (const address of ['10.2.0.1', '192.168.1.1', '::2', undefined]) {
    expect(rfc9440({ 'client-cert': `:${cert.der.toString('base64')}:` }, address)).toEqual({ trusted: false });
    expect(rfc9440({ 'client-cert': 'garbage' }, address)).toEqual({ trusted: false });
  }
});

test('a trusted proxy without the header means no certificate', () => {
  expect(rfc9440({}, '127.0.0.1')).toEqual({ trusted: true, thumbprint: undefined });
  expect(nginx({ 'x-ssl-client-cert': '' }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: undefined });
});

test('malformed Client-Cert values are a VerifierError (400), never another throw', () => {
  const b64 = cert.der.toString('base64');
  for (const value of [b64, `:${b64}`, `${b64}:`, `:${b64}!:`, '::', ':AAAA:', `:${Buffer.from('hello').toString('base64')}:`, `:${b64}:;=1`, `:${b64}:;A=1`, 'x'.repeat(20_000)]) {
    expectMalformed(() => rfc9440({ 'client-cert': value }, '127.0.0.1'));
  }
  expectMalformed(() => rfc9440({ 'client-cert': [`:${b64}:`, `:${b64}:`] }, '127.0.0.1'));
  // Trailing bytes after the DER: the thumbprint would not be of exactly the certificate.
  expectMalformed(() => rfc9440({ 'client-cert': `:${Buffer.concat([cert.der, Buffer.from([0, 0])]).toString('base64')}:` }, '127.0.0.1'));
});

// RFC 9440 §2.1 makes Client-Cert an RFC 8941 Item: well-formed parameters (§3.1.2) are allowed and
// carry no meaning here. The server's parser accepted them and this one did not; there is one now.
test('RFC 8941 parameters on the byte sequence are skipped; the zone of a link-local proxy is ignored', () => {
  const header = `:${cert.der.toString('base64')}:;a=1;b;c="x";d=?0`;
  expect(rfc9440({ 'client-cert': header }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: cert.thumbprint });
  const linkLocal = createClientCertificateHeaderReader({ trustedProxies: ['fe80::/10'] });
  expect(linkLocal({ 'client-cert': header }, 'fe80::1%eth0')).toEqual({ trusted: true, thumbprint: cert.thumbprint });
});

test('nginx URL-escaped PEM ($ssl_client_escaped_cert)', () => {
  expect(nginx({ 'x-ssl-client-cert': encodeURIComponent(cert.cert) }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: cert.thumbprint });
});

// RFC 9440 §4: one occurrence, one certificate (headersDistinct arrays, or values node:http joined).
test('a repeated header, a joined value or a chain is a VerifierError, never the first certificate', () => {
  const pem = encodeURIComponent(cert.cert);
  for (const values of [[pem, ''], ['', pem], [pem, pem], ['', '']]) {
    expectMalformed(() => nginx({ 'x-ssl-client-cert': values }, '127.0.0.1'));
  }
  for (const value of [`${pem}, `, `, ${pem}`, `${pem}, ${pem}`, encodeURIComponent(cert.cert + cert.cert), encodeURIComponent(`${cert.cert}x`)]) {
    expectMalformed(() => nginx({ 'x-ssl-client-cert': value }, '127.0.0.1'));
  }
  const sf = `:${cert.der.toString('base64')}:`;
  for (const values of [[sf, ''], ['', sf]]) expectMalformed(() => rfc9440({ 'client-cert': values }, '127.0.0.1'));
  for (const value of [`${sf}, `, `, ${sf}`]) expectMalformed(() => rfc9440({ 'client-cert': value }, '127.0.0.1'));
  // One occurrence as headersDistinct gives it.
  expect(nginx({ 'x-ssl-client-cert': [pem] }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: cert.thumbprint });
  expect(nginx({ 'x-ssl-client-cert': [''] }, '127.0.0.1')).toEqual({ trusted: true, thumbprint: undefined });
});

test('malformed nginx values are a VerifierError', () => {
  for (const value of ['%E0%A4%A', 'not a pem', encodeURIComponent('-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----')]) {
    expectMalformed(() => nginx({ 'x-ssl-client-cert': value }, '127.0.0.1'));
  }
});

test('a bad proxy list is a TypeError at configuration time', () => {
  for (const trustedProxies of [['localhost'], ['10.0.0.0/33'], ['10.0.0.0/x'], ['::1/129']]) {
    expect(() => createClientCertificateHeaderReader({ trustedProxies })).toThrow(TypeError);
  }
  expect(() => createClientCertificateHeaderReader({ trustedProxies: [], header: 'x-forwarded-cert' as never })).toThrow(TypeError);
});

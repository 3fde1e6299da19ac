import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { BindingError } from '../../src/binding/binding_error.js';
import {
  assertProxyCertificateOptions,
  certificateFromProxyHeaders,
  isTrustedProxy,
  type ProxyCertificateOptions,
} from '../../src/binding/proxy_certificate.js';
import { createEphemeralPki, issueClientCertificate, type Pki } from '../../src/keys/dev_pki.js';
import { opensslThumbprint } from './tls_fixture.js';

// Top-level await: the it.each tables below are built from it when the file loads.
const pki: Pki = await createEphemeralPki({ clientNames: ['alpha'] });
const derBase64 = new X509Certificate(pki.clients.alpha!.certificatePem).raw.toString('base64');

/** RFC 9440 §2.1: the DER as an RFC 8941 byte sequence. */
function clientCertHeader(pem: string): string {
  return `:${new X509Certificate(pem).raw.toString('base64')}:`;
}

/** nginx `$ssl_client_escaped_cert`: the PEM, URL-escaped. */
function escapedPem(pem: string): string {
  return encodeURIComponent(pem);
}

function expectHeaderError(action: () => unknown): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(BindingError);
  expect((thrown as BindingError).code).toBe('ERR_CLIENT_CERT_HEADER');
}

describe('certificateFromProxyHeaders: RFC 9440 Client-Cert', () => {
  const options: ProxyCertificateOptions = { trustedProxies: ['10.0.0.1'], header: 'client-cert' };

  it('returns the forwarded certificate from a trusted proxy, with the thumbprint openssl computes', () => {
    const certificate = certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, '10.0.0.1', options);
    expect(certificate).toBeDefined();
    expect(certificate!.source).toBe('proxy-header');
    expect(certificate!.thumbprint).toBe(opensslThumbprint(pki.clients.alpha!.certificatePem));
    expect(certificate!.thumbprint).toBe(pki.clients.alpha!.thumbprint);
    expect(certificate!.subject).toBe('CN=alpha');
    expect(certificate!.der.equals(Buffer.from(derBase64, 'base64'))).toBe(true);
  });

  it('ignores the header from a peer that is not a trusted proxy', () => {
    expect(certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, '10.0.0.2', options)).toBeUndefined();
    expect(certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, undefined, options)).toBeUndefined();
    // Even a malformed header is no error when nobody we trust sent it.
    expect(certificateFromProxyHeaders({ 'client-cert': 'garbage' }, '192.0.2.1', options)).toBeUndefined();
  });

  it('returns undefined when a trusted proxy sends no header or an empty one', () => {
    expect(certificateFromProxyHeaders({}, '10.0.0.1', options)).toBeUndefined();
    expect(certificateFromProxyHeaders({ 'client-cert': '' }, '10.0.0.1', options)).toBeUndefined();
    expect(certificateFromProxyHeaders({ 'client-cert': '   ' }, '10.0.0.1', options)).toBeUndefined();
  });

  it('accepts surrounding spaces, missing base64 padding and RFC 8941 parameters', () => {
    const unpadded = derBase64.replace(/=+$/, '');
    for (const value of [` :${derBase64}: `, `:${unpadded}:`, `:${derBase64}:;a=1;b;c="x";d=?0;e=tok/en`]) {
      expect(certificateFromProxyHeaders({ 'client-cert': value }, '10.0.0.1', options)?.thumbprint).toBe(pki.clients.alpha!.thumbprint);
    }
  });

  it.each([
    ['no colons', derBase64],
    ['one colon', `:${derBase64}`],
    ['base64 outside the alphabet', `:${derBase64.slice(0, 40)}$$${derBase64.slice(40)}:`],
    ['base64url instead of base64', `:${Buffer.from(derBase64, 'base64').toString('base64url')}-_:`],
    ['impossible base64 length', ':AAAAA:'],
    ['misplaced padding', `:AA==AA==:`],
    ['a list of two certificates (repeated header)', `:${derBase64}:, :${derBase64}:`],
    ['a certificate joined with an empty repeat', `:${derBase64}:, `],
    ['an empty repeat joined with a certificate', `, :${derBase64}:`],
    ['a string item', `"${derBase64}"`],
    ['malformed parameters', `:${derBase64}:;=1`],
    ['bytes that are not a certificate', `:${Buffer.from('hello world').toString('base64')}:`],
    ['an empty byte sequence', '::'],
    ['a truncated certificate', `:${Buffer.from(derBase64, 'base64').subarray(0, 200).toString('base64')}:`],
    ['trailing bytes after the certificate', `:${Buffer.concat([Buffer.from(derBase64, 'base64'), Buffer.from([0, 0])]).toString('base64')}:`],
  ])('rejects %s with ERR_CLIENT_CERT_HEADER', (_label, value) => {
    expectHeaderError(() => certificateFromProxyHeaders({ 'client-cert': value }, '10.0.0.1', options));
  });

  it('rejects an escaped PEM sent in the RFC 9440 header', () => {
    expectHeaderError(() =>
      certificateFromProxyHeaders({ 'client-cert': escapedPem(pki.clients.alpha!.certificatePem) }, '10.0.0.1', options),
    );
  });

  it('rejects a header given twice, even when one occurrence is empty', () => {
    expectHeaderError(() => certificateFromProxyHeaders({ 'client-cert': [`:${derBase64}:`, `:${derBase64}:`] }, '10.0.0.1', options));
    expectHeaderError(() => certificateFromProxyHeaders({ 'client-cert': [`:${derBase64}:`, ''] }, '10.0.0.1', options));
    expectHeaderError(() => certificateFromProxyHeaders({ 'client-cert': ['', `:${derBase64}:`] }, '10.0.0.1', options));
  });

  it('throws nothing but BindingError for any header value from a trusted proxy', () => {
    const values = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.uint8Array({ maxLength: 600 }).map((bytes) => `:${Buffer.from(bytes).toString('base64')}:`),
      fc.integer({ min: 0, max: 900 }).map((cut) => `:${Buffer.from(derBase64, 'base64').subarray(0, cut).toString('base64')}:`),
    );
    fc.assert(
      fc.property(values, (value) => {
        try {
          const certificate = certificateFromProxyHeaders({ 'client-cert': value }, '10.0.0.1', options);
          return certificate === undefined || certificate.thumbprint.length === 43;
        } catch (error) {
          return error instanceof BindingError && error.code === 'ERR_CLIENT_CERT_HEADER';
        }
      }),
      { numRuns: 500 },
    );
  });

  it('reuses the parsed certificate for a repeated header value', () => {
    const first = certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, '10.0.0.1', options)!;
    const second = certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, '10.0.0.1', options)!;
    expect(second.x509).toBe(first.x509);
    expect(second.thumbprint).toBe(first.thumbprint);
  });
});

describe('certificateFromProxyHeaders: nginx $ssl_client_escaped_cert', () => {
  const options: ProxyCertificateOptions = { trustedProxies: ['127.0.0.1'], header: 'x-ssl-client-cert' };

  it('reads a URL-escaped PEM', () => {
    const certificate = certificateFromProxyHeaders({ 'x-ssl-client-cert': escapedPem(pki.clients.alpha!.certificatePem) }, '127.0.0.1', options);
    expect(certificate?.thumbprint).toBe(opensslThumbprint(pki.clients.alpha!.certificatePem));
  });

  it('tolerates CRLF and an unescaped "+"', () => {
    const pem = pki.clients.alpha!.certificatePem;
    const crlf = escapedPem(pem.replace(/\n/g, '\r\n'));
    expect(certificateFromProxyHeaders({ 'x-ssl-client-cert': crlf }, '127.0.0.1', options)?.thumbprint).toBe(pki.clients.alpha!.thumbprint);
    const plusUnescaped = escapedPem(pem).replace(/%2B/g, '+');
    expect(certificateFromProxyHeaders({ 'x-ssl-client-cert': plusUnescaped }, '127.0.0.1', options)?.thumbprint).toBe(
      pki.clients.alpha!.thumbprint,
    );
  });

  // RFC 9440 §4: one occurrence, one certificate. Before issue 12 the first PEM block won, so a
  // client's copy joined in front of the proxy's value authenticated as its certificate's owner.
  it.each([
    ['a chain after the certificate', (pem: string) => escapedPem(pem + pki.ca.certificatePem)],
    ['two values joined by node:http ("a, b")', (pem: string) => `${escapedPem(pem)}, ${escapedPem(pki.ca.certificatePem)}`],
    ['a value joined with the proxy’s empty one ("a, ")', (pem: string) => `${escapedPem(pem)}, `],
    ['the proxy’s empty value joined after nothing (", a")', (pem: string) => `, ${escapedPem(pem)}`],
    ['text after the PEM', (pem: string) => escapedPem(`${pem}trailing`)],
  ])('refuses %s with ERR_CLIENT_CERT_HEADER', (_label, make) => {
    expectHeaderError(() => certificateFromProxyHeaders({ 'x-ssl-client-cert': make(pki.clients.alpha!.certificatePem) }, '127.0.0.1', options));
  });

  it.each([
    ['the certificate, then an empty value', () => [escapedPem(pki.clients.alpha!.certificatePem), '']],
    ['an empty value, then the certificate', () => ['', escapedPem(pki.clients.alpha!.certificatePem)]],
    ['two empty values', () => ['', '']],
    ['the same certificate twice', () => [escapedPem(pki.clients.alpha!.certificatePem), escapedPem(pki.clients.alpha!.certificatePem)]],
  ])('refuses a header that occurs twice in headersDistinct (%s)', (_label, values) => {
    expectHeaderError(() => certificateFromProxyHeaders({ 'x-ssl-client-cert': values() }, '127.0.0.1', options));
  });

  it('reads a single occurrence from headersDistinct', () => {
    const distinct = { 'x-ssl-client-cert': [escapedPem(pki.clients.alpha!.certificatePem)] };
    expect(certificateFromProxyHeaders(distinct, '127.0.0.1', options)?.thumbprint).toBe(pki.clients.alpha!.thumbprint);
    expect(certificateFromProxyHeaders({ 'x-ssl-client-cert': [''] }, '127.0.0.1', options)).toBeUndefined();
  });

  it('matches the header name case-insensitively in the options', () => {
    const upper = { trustedProxies: ['127.0.0.1'], header: 'X-SSL-Client-Cert' };
    const certificate = certificateFromProxyHeaders({ 'x-ssl-client-cert': escapedPem(pki.clients.alpha!.certificatePem) }, '127.0.0.1', upper);
    expect(certificate?.thumbprint).toBe(pki.clients.alpha!.thumbprint);
  });

  it.each([
    ['a truncated PEM (no END line)', (pem: string) => escapedPem(pem.slice(0, pem.length / 2))],
    ['a PEM cut in the middle of the base64', (pem: string) => escapedPem(pem.slice(0, 100) + pem.slice(-26))],
    ['a private key instead of a certificate', () => escapedPem(pki.clients.alpha!.privateKeyPem)],
    ['text before the PEM', (pem: string) => escapedPem(`hello ${pem}`)],
    ['invalid URL escaping', (pem: string) => `${escapedPem(pem)}%E0%A4%A`],
    ['a bare RFC 9440 value', () => `:${derBase64}:`],
    ['garbage inside the PEM armour', () => escapedPem('-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n')],
    ['a PEM whose base64 is not a certificate', () => escapedPem('-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n')],
  ])('rejects %s with ERR_CLIENT_CERT_HEADER', (_label, make) => {
    expectHeaderError(() => certificateFromProxyHeaders({ 'x-ssl-client-cert': make(pki.clients.alpha!.certificatePem) }, '127.0.0.1', options));
  });

  it('treats an empty value (nginx: no client certificate) as none', () => {
    expect(certificateFromProxyHeaders({ 'x-ssl-client-cert': '' }, '127.0.0.1', options)).toBeUndefined();
  });

  it('reads only the configured header', () => {
    const headers = { 'client-cert': `:${derBase64}:` };
    expect(certificateFromProxyHeaders(headers, '127.0.0.1', options)).toBeUndefined();
  });
});

describe('trusted proxies: addresses and CIDR blocks', () => {
  const cases: Array<[string[], string, boolean]> = [
    [['10.0.0.0/8'], '10.200.3.4', true],
    [['10.0.0.0/8'], '11.0.0.1', false],
    [['192.168.1.0/24'], '192.168.1.255', true],
    [['192.168.1.0/24'], '192.168.2.1', false],
    [['203.0.113.7'], '203.0.113.7', true],
    [['203.0.113.7'], '203.0.113.8', false],
    [['0.0.0.0/0'], '198.51.100.1', true],
    // IPv4 rules match IPv4-mapped IPv6 peers (dual-stack listeners report those).
    [['10.0.0.0/8'], '::ffff:10.1.2.3', true],
    [['10.0.0.0/8'], '::ffff:a01:203', true],
    [['10.0.0.0/8'], '::ffff:11.1.2.3', false],
    [['::ffff:10.0.0.5'], '10.0.0.5', true],
    [['::ffff:10.0.0.0/104'], '10.9.9.9', true],
    // IPv6
    [['::1'], '::1', true],
    [['::1'], '::2', false],
    [['fd00::/8'], 'fd12:3456::1', true],
    [['fd00::/8'], 'fe80::1', false],
    [['2001:db8::/32'], '2001:db8:ffff::1', true],
    [['2001:db8::/32'], '2001:db9::1', false],
    [['fe80::/10'], 'fe80::1%eth0', true],
    // Families do not leak into each other beyond the mapped range.
    [['10.0.0.1'], '::1', false],
    [['::1'], '127.0.0.1', false],
    // Several entries
    [['127.0.0.1', '::1', '10.0.0.0/8'], '10.0.0.9', true],
    // Nothing is trusted by default; odd peers are untrusted.
    [[], '127.0.0.1', false],
    [['10.0.0.0/8'], 'not-an-address', false],
    [['10.0.0.0/8'], '', false],
  ];

  it.each(cases)('%j trusts %s: %s', (trustedProxies, peer, expected) => {
    expect(isTrustedProxy(peer, { trustedProxies })).toBe(expected);
    const certificate = certificateFromProxyHeaders({ 'client-cert': `:${derBase64}:` }, peer, { trustedProxies });
    expect(certificate !== undefined).toBe(expected);
  });

  it.each([
    ['not an address', ['proxy.internal']],
    ['prefix too long (IPv4)', ['10.0.0.0/33']],
    ['prefix too long (IPv6)', ['::1/129']],
    ['negative prefix', ['10.0.0.0/-1']],
    ['empty prefix', ['10.0.0.0/']],
    ['two slashes', ['10.0.0.0/8/8']],
    ['an empty entry', ['']],
  ])('rejects a configuration with %s', (_label, trustedProxies) => {
    let thrown: unknown;
    try {
      assertProxyCertificateOptions({ trustedProxies });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(BindingError);
    expect((thrown as BindingError).code).toBe('ERR_TRUSTED_PROXY_CONFIG');
  });

  it('rejects a bad header name, format or CA in the configuration', () => {
    for (const options of [
      { trustedProxies: [], header: 'client cert' },
      { trustedProxies: [], format: 'json' as never },
      { trustedProxies: [], ca: 'not a pem' },
      { trustedProxies: [], ca: [Buffer.from('nope')] },
    ]) {
      expect(() => assertProxyCertificateOptions(options)).toThrow(expect.objectContaining({ code: 'ERR_TRUSTED_PROXY_CONFIG' }));
    }
  });
});

describe('authorized: forwarded certificates are checked against the configured CA', () => {
  function forwarded(pem: string, ca?: ProxyCertificateOptions['ca']) {
    return certificateFromProxyHeaders({ 'client-cert': clientCertHeader(pem) }, '10.0.0.1', { trustedProxies: ['10.0.0.1'], ca });
  }

  it('authorizes a certificate issued by the CA (PEM, DER, parsed or a bundle)', () => {
    const caPem = pki.ca.certificatePem;
    const other = pki.server.certificatePem;
    for (const ca of [caPem, new X509Certificate(caPem).raw, new X509Certificate(caPem), [other, caPem], `${other}${caPem}`]) {
      expect(forwarded(pki.clients.alpha!.certificatePem, ca)).toMatchObject({ authorized: true, authorizationError: undefined });
    }
  });

  it('never authorizes without a configured CA', () => {
    expect(forwarded(pki.clients.alpha!.certificatePem)).toMatchObject({ authorized: false, authorizationError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' });
  });

  it('does not authorize a self-signed certificate, one from another CA, an expired one or a server certificate', async () => {
    const ca = pki.ca.certificatePem;
    const selfSigned = await issueClientCertificate(pki, 'solo', { selfSigned: true });
    const stranger = await createEphemeralPki({ clientNames: ['mallory'] });
    const expired = await issueClientCertificate(pki, 'old', { notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const future = await issueClientCertificate(pki, 'early', { notBefore: new Date(Date.now() + 86_400_000) });
    expect(forwarded(selfSigned.certificatePem, ca)).toMatchObject({ authorized: false, authorizationError: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(forwarded(stranger.clients.mallory!.certificatePem, ca)).toMatchObject({
      authorized: false,
      authorizationError: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    });
    expect(forwarded(expired.certificatePem, ca)).toMatchObject({ authorized: false, authorizationError: 'CERT_HAS_EXPIRED' });
    expect(forwarded(future.certificatePem, ca)).toMatchObject({ authorized: false, authorizationError: 'CERT_NOT_YET_VALID' });
    // The server certificate's extended key usage is serverAuth only (RFC 5280 §4.2.1.12).
    expect(forwarded(pki.server.certificatePem, ca)).toMatchObject({ authorized: false, authorizationError: 'INVALID_PURPOSE' });
  });

  it('does not authorize a certificate signed by a certificate that is not a CA', async () => {
    // A leaf certificate's key used as an issuer: RFC 5280 §4.2.1.9 says it may not sign certificates.
    const leaf = await issueClientCertificate(pki, 'leaf');
    const signedByLeaf = await issueClientCertificate({ ...pki, ca: leaf }, 'victim');
    expect(new X509Certificate(signedByLeaf.certificatePem).verify(new X509Certificate(leaf.certificatePem).publicKey)).toBe(true);
    expect(forwarded(signedByLeaf.certificatePem, leaf.certificatePem)?.authorized).toBe(false);
  });
});

// One parser of forwarded client-certificate headers: the server (src/binding/proxy_certificate.ts)
// and the verifier middleware (tether-oauth-resource-server) give the same answer for every value —
// the same thumbprint, or both refuse it. Before issue 14 they disagreed (RFC 8941 parameters, IPv6
// zone ids, X.509 parsing, the size cap).
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { BindingError } from '../../src/binding/binding_error.js';
import { certificateFromProxyHeaders } from '../../src/binding/proxy_certificate.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import { createClientCertificateHeaderReader, MAX_CLIENT_CERT_HEADER_LENGTH, VerifierError } from '../../src/resource_server/index.js';

const pki: Pki = await createEphemeralPki({ clientNames: ['alpha'] });
const pem = pki.clients.alpha!.certificatePem;
const der = new X509Certificate(pem).raw;
const b64 = der.toString('base64');
const thumbprint = pki.clients.alpha!.thumbprint;
const proxies = ['10.0.0.1', 'fe80::/10', '::ffff:192.0.2.0/120'];

type Verdict = string | 'refused' | 'none' | 'untrusted';

function serverVerdict(header: 'client-cert' | 'x-ssl-client-cert', value: string | string[], peer: string): Verdict {
  try {
    const found = certificateFromProxyHeaders({ [header]: value }, peer, { trustedProxies: proxies, header });
    return found?.thumbprint ?? 'none';
  } catch (error) {
    if (error instanceof BindingError && error.code === 'ERR_CLIENT_CERT_HEADER') return 'refused';
    throw error;
  }
}

function verifierVerdict(header: 'client-cert' | 'x-ssl-client-cert', value: string | string[], peer: string): Verdict {
  const read = createClientCertificateHeaderReader({ trustedProxies: proxies, header });
  try {
    const found = read({ [header]: value }, peer);
    // The server has no "trusted but none" answer of its own: it then uses no certificate at all.
    return found.trusted ? (found.thumbprint ?? 'none') : 'none';
  } catch (error) {
    if (error instanceof VerifierError && error.code === 'ERR_CLIENT_CERT_HEADER') return 'refused';
    throw error;
  }
}

const rfc9440: Array<[string, string | string[], Verdict]> = [
  ['a byte sequence', `:${b64}:`, thumbprint],
  ['RFC 8941 parameters (skipped)', `:${b64}:;a=1;b;c="x";d=?0`, thumbprint],
  ['missing padding', `:${b64.replace(/=+$/, '')}:`, thumbprint],
  ['surrounding spaces', `  :${b64}:  `, thumbprint],
  ['malformed parameters', `:${b64}:;=1`, 'refused'],
  ['an upper-case parameter key', `:${b64}:;A=1`, 'refused'],
  ['bytes after the certificate', `:${Buffer.concat([der, Buffer.from([0, 0])]).toString('base64')}:`, 'refused'],
  ['a SEQUENCE that is not a certificate', `:${Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]).toString('base64')}:`, 'refused'],
  ['a list of two', `:${b64}:, :${b64}:`, 'refused'],
  ['two occurrences', [`:${b64}:`, ''], 'refused'],
  ['more than the size cap', `:${b64}:;p="${'x'.repeat(MAX_CLIENT_CERT_HEADER_LENGTH)}"`, 'refused'],
  ['an empty value', '', 'none'],
];

const escapedPem: Array<[string, string | string[], Verdict]> = [
  ['URL-escaped PEM', encodeURIComponent(pem), thumbprint],
  ['a chain', encodeURIComponent(pem + pki.ca.certificatePem), 'refused'],
  ['two values joined', `${encodeURIComponent(pem)}, ${encodeURIComponent(pem)}`, 'refused'],
  ['PEM armour around bytes that are not a certificate', encodeURIComponent('-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n'), 'refused'],
  ['more than the size cap', encodeURIComponent(pem) + '%20'.repeat(MAX_CLIENT_CERT_HEADER_LENGTH / 3), 'refused'],
];

describe.each([['10.0.0.1'], ['fe80::1%eth0'], ['192.0.2.7']])('from the trusted proxy %s', (peer) => {
  it.each(rfc9440)('Client-Cert: %s', (_label, value, expected) => {
    expect({ server: serverVerdict('client-cert', value, peer), verifier: verifierVerdict('client-cert', value, peer) }).toEqual({ server: expected, verifier: expected });
  });

  it.each(escapedPem)('X-SSL-Client-Cert: %s', (_label, value, expected) => {
    expect({ server: serverVerdict('x-ssl-client-cert', value, peer), verifier: verifierVerdict('x-ssl-client-cert', value, peer) }).toEqual({ server: expected, verifier: expected });
  });
});

it('from anyone else both ignore the header', () => {
  for (const peer of ['10.0.0.2', 'fd00::1%eth0', '::ffff:198.51.100.1', undefined]) {
    expect(serverVerdict('client-cert', 'garbage', peer as string)).toBe('none');
    expect(verifierVerdict('client-cert', 'garbage', peer as string)).toBe('none');
  }
});

it('agree on any value (property)', () => {
  const values = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.uint8Array({ maxLength: 400 }).map((bytes) => `:${Buffer.from(bytes).toString('base64')}:`),
    fc.integer({ min: 0, max: der.length }).map((cut) => `:${der.subarray(0, cut).toString('base64')}:`),
    fc.string({ maxLength: 20 }).map((suffix) => `:${b64}:${suffix}`),
  );
  fc.assert(
    fc.property(values, (value) => serverVerdict('client-cert', value, '10.0.0.1') === verifierVerdict('client-cert', value, '10.0.0.1')),
    { numRuns: 400 },
  );
});

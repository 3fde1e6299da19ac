/**
 * Generating the development PKI's keys and certificates (keys/dev_pki.ts): ECDSA P-256 keys, and
 * certificates encoded by certificate_builder.ts (ASN.1 through @peculiar/asn1-x509). dev_pki.ts
 * loads this module only when it must issue something, so that a restart, which only reads the
 * stored PKI, does not load the ASN.1 code.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { buildCertificate, keyIdentifierOf, nameOf, subjectNameOf, type AlternativeName, type CertificateRequest } from './certificate_builder.js';
import type { CertificateAndKey, IssueClientCertificateOptions } from './dev_pki.js';

const CA_VALIDITY_DAYS = 3650;
// 397 days is the longest validity browsers accept for a server certificate.
const LEAF_VALIDITY_DAYS = 397;
const DAY_MS = 86_400_000;
const CLOCK_SKEW_MS = 3_600_000;
const DNS_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** A key that can sign certificates, with the name and identifier it signs as. */
export interface Signer {
  readonly subject: CertificateRequest['issuer'];
  /** End of the issuer's validity; issued certificates end no later (undefined when self-signing). */
  readonly notAfter: Date | undefined;
  readonly privateKey: KeyObject;
  /** RFC 5280 §4.2.1.1: the key identifier its certificates name as their authority's. */
  readonly keyIdentifier: Buffer;
}

export interface Generated extends Signer {
  readonly der: Buffer;
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export function generateCa(name: string): Generated {
  const keys = generateKeyPair();
  const subject = nameOf([['CN', `${name} ${randomBytes(4).toString('hex')}`], ['O', 'Tether']]);
  const now = Date.now();
  // pathLen 0 (role ca): the development CA signs end-entity certificates only.
  return generated(buildCertificate({
    serialNumber: serialNumber(),
    subject,
    issuer: subject,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + CA_VALIDITY_DAYS * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    role: 'ca',
    subjectKeyIdentifier: keys.identifier,
  }), keys, subject);
}

export function generateServer(ca: Signer, hostnames: readonly string[], name: string): Generated {
  const names = hostnames.map((hostname) => ({ type: isIP(hostname) ? ('ip' as const) : ('dns' as const), value: hostname }));
  return generateLeaf(ca, name, names, 'serverAuth', {});
}

export function generateClient(ca: Signer, name: string, validity: IssueClientCertificateOptions): Generated {
  return generateLeaf(ca, name, clientAlternativeNames(name), 'clientAuth', validity);
}

/** SAN dNSName = the client name when it is a host name, for `tls_client_auth_san_dns` (RFC 8705 §2.1.2). */
function clientAlternativeNames(name: string): AlternativeName[] {
  return DNS_NAME.test(name) ? [{ type: 'dns', value: name }] : [];
}

export function generateSelfSignedClient(name: string, validity: IssueClientCertificateOptions): Generated {
  const keys = generateKeyPair();
  const self: Signer = { subject: nameOf([['CN', name]]), notAfter: undefined, privateKey: keys.privateKey, keyIdentifier: keys.identifier };
  return generateLeaf(self, name, clientAlternativeNames(name), 'clientAuth', validity, keys);
}

function generateLeaf(
  issuer: Signer,
  commonName: string,
  alternativeNames: readonly AlternativeName[],
  role: 'serverAuth' | 'clientAuth',
  validity: IssueClientCertificateOptions,
  keys: KeyPair = generateKeyPair(),
): Generated {
  const now = Date.now();
  const subject = nameOf([['CN', commonName]]);
  return generated(buildCertificate({
    serialNumber: serialNumber(),
    subject,
    issuer: issuer.subject,
    notBefore: validity.notBefore ?? new Date(now - CLOCK_SKEW_MS),
    notAfter: validity.notAfter ?? earliest(new Date(now + LEAF_VALIDITY_DAYS * DAY_MS), issuer.notAfter),
    publicKey: keys.publicKey,
    signingKey: issuer.privateKey,
    authorityKeyIdentifier: issuer.keyIdentifier,
    role,
    alternativeNames,
    subjectKeyIdentifier: keys.identifier,
  }), keys, subject);
}

/**
 * The certificate `der` just built for `keys` and `subject`, with what it signs as: the very name
 * object it was built with (serialized the same way into each certificate it issues) and its key's
 * identifier, computed once per key.
 */
function generated(der: Buffer, keys: KeyPair, subject: Signer['subject']): Generated {
  return {
    der,
    certificatePem: pemOf('CERTIFICATE', der),
    privateKeyPem: pemOf('PRIVATE KEY', keys.privateKey.export({ type: 'pkcs8', format: 'der' })),
    subject,
    notAfter: new X509Certificate(der).validToDate,
    privateKey: keys.privateKey,
    keyIdentifier: keys.identifier,
  };
}

/** Rebuilds a signer from a stored CA (only needed when something must be issued). */
export function signerFromPem(ca: Pick<CertificateAndKey, 'certificatePem' | 'privateKeyPem'>): Signer {
  const certificate = new X509Certificate(ca.certificatePem);
  return {
    subject: subjectNameOf(certificate.raw),
    notAfter: certificate.validToDate,
    privateKey: createPrivateKey(ca.privateKeyPem),
    keyIdentifier: keyIdentifierOf(certificate.publicKey),
  };
}

interface KeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
  /** RFC 5280 §4.2.1.2 method (1) identifier of the public key. */
  readonly identifier: Buffer;
}

function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { publicKey, privateKey, identifier: keyIdentifierOf(publicKey) };
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function earliest(date: Date, limit: Date | undefined): Date {
  return limit && limit < date ? limit : date;
}

function pemOf(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

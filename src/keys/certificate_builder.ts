import { createHash, sign, type KeyObject } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, AuthorityKeyIdentifier, BasicConstraints, Certificate, ExtendedKeyUsage,
  Extension, Extensions, GeneralName, id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage,
  id_ce_subjectAltName, id_ce_subjectKeyIdentifier, id_kp_clientAuth, id_kp_serverAuth, KeyIdentifier, KeyUsage, KeyUsageFlags, Name,
  RelativeDistinguishedName, SubjectAlternativeName, SubjectKeyIdentifier, SubjectPublicKeyInfo, TBSCertificate, Validity, Version,
} from '@peculiar/asn1-x509';

/**
 * X.509 v3 certificates (RFC 5280) for the development PKI, built from their ASN.1 structures and
 * signed with node:crypto (ECDSA P-256 with SHA-256, RFC 5758 §3.2). Only the fields and extensions
 * the development CA, server and clients need. (@peculiar/x509 would need a `reflect-metadata`
 * polyfill installed on the global `Reflect`; these ASN.1 classes need none.)
 */

/** RFC 5758 §3.2 ecdsa-with-SHA256 (the parameters are absent). */
const ECDSA_WITH_SHA256 = new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' });

/** RFC 5280 §4.1.2.4 attribute types Tether's names use. */
const ATTRIBUTE_TYPES = { CN: '2.5.4.3', O: '2.5.4.10' } as const;

/** A distinguished name as `[type, value]` pairs, most significant first: `[['CN', 'worker']]`. */
export type NameAttributes = readonly (readonly [keyof typeof ATTRIBUTE_TYPES, string])[];

/** A subjectAltName entry: dNSName, iPAddress or uniformResourceIdentifier (a SPIFFE ID). */
export interface AlternativeName {
  type: 'dns' | 'ip' | 'uri';
  value: string;
}

export interface CertificateRequest {
  /** Hexadecimal, positive (RFC 5280 §4.1.2.2: at most 20 octets). */
  serialNumber: string;
  subject: Name;
  issuer: Name;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  /** The issuer's private key (the subject's own for a self-signed certificate). */
  signingKey: KeyObject;
  /** RFC 5280 §4.2.1.1: the issuer's key identifier; absent for a CA's own certificate. */
  authorityKeyIdentifier?: Buffer;
  /** RFC 5280 §4.2.1.2: `publicKey`'s identifier, when the caller has it already (keyIdentifierOf). */
  subjectKeyIdentifier?: Buffer;
  /** A CA that signs end-entity certificates only (pathLenConstraint 0), or an end entity for this purpose. */
  role: 'ca' | 'serverAuth' | 'clientAuth';
  /** RFC 5280 §4.2.1.6 subjectAltName entries. */
  alternativeNames?: readonly AlternativeName[];
}

/** The DER encoding of the certificate `request` describes, signed by `request.signingKey`. */
export function buildCertificate(request: CertificateRequest): Buffer {
  const subjectPublicKeyInfo = AsnConvert.parse(spkiOf(request.publicKey), SubjectPublicKeyInfo);
  const subjectKeyIdentifier = request.subjectKeyIdentifier ?? identifierOf(subjectPublicKeyInfo);
  const tbsCertificate = new TBSCertificate({
    version: Version.v3,
    serialNumber: arrayBufferOf(Buffer.from(request.serialNumber, 'hex')),
    signature: ECDSA_WITH_SHA256,
    issuer: request.issuer,
    // Copied: the ASN.1 classes test `instanceof Date`, which a Date of another realm (node:crypto's
    // X509Certificate#validToDate inside a test runner's context) fails.
    validity: new Validity({ notBefore: new Date(request.notBefore.getTime()), notAfter: new Date(request.notAfter.getTime()) }),
    subject: request.subject,
    subjectPublicKeyInfo,
    extensions: new Extensions(extensionsOf(request, subjectKeyIdentifier)),
  });
  const tbs = Buffer.from(AsnConvert.serialize(tbsCertificate));
  // node:crypto signs ECDSA as the DER Ecdsa-Sig-Value that RFC 5758 §3.2 asks for.
  const signatureValue = sign('sha256', tbs, request.signingKey);
  return Buffer.from(AsnConvert.serialize(new Certificate({ tbsCertificate, signatureAlgorithm: ECDSA_WITH_SHA256, signatureValue: arrayBufferOf(signatureValue) })));
}

/** A distinguished name from its attributes. */
export function nameOf(attributes: NameAttributes): Name {
  return new Name(attributes.map(([type, value]) => new RelativeDistinguishedName([
    new AttributeTypeAndValue({ type: ATTRIBUTE_TYPES[type], value: new AttributeValue({ utf8String: value }) }),
  ])));
}

/** The subject name of a DER certificate, exactly as encoded (to name it as the issuer of others). */
export function subjectNameOf(der: Buffer): Name {
  return AsnConvert.parse(der, Certificate).tbsCertificate.subject;
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
export function keyIdentifierOf(publicKey: KeyObject): Buffer {
  return identifierOf(AsnConvert.parse(spkiOf(publicKey), SubjectPublicKeyInfo));
}

function identifierOf({ subjectPublicKey }: SubjectPublicKeyInfo): Buffer {
  return createHash('sha1').update(Buffer.from(subjectPublicKey)).digest();
}

function arrayBufferOf(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function spkiOf(publicKey: KeyObject): Buffer {
  return publicKey.export({ type: 'spki', format: 'der' });
}

function extensionsOf(request: CertificateRequest, subjectKeyIdentifier: Buffer): Extension[] {
  const ca = request.role === 'ca';
  const names = request.alternativeNames ?? [];
  return [
    extension(id_ce_basicConstraints, true, new BasicConstraints(ca ? { cA: true, pathLenConstraint: 0 } : { cA: false })),
    extension(id_ce_keyUsage, true, new KeyUsage(ca ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign : KeyUsageFlags.digitalSignature)),
    ...(ca ? [] : [extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([request.role === 'serverAuth' ? id_kp_serverAuth : id_kp_clientAuth]))]),
    ...(names.length > 0 ? [extension(id_ce_subjectAltName, false, new SubjectAlternativeName(names.map(generalNameOf)))] : []),
    extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(subjectKeyIdentifier)),
    ...(request.authorityKeyIdentifier
      ? [extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(request.authorityKeyIdentifier) }))]
      : []),
  ];
}

function generalNameOf(name: AlternativeName): GeneralName {
  if (name.type === 'uri') return new GeneralName({ uniformResourceIdentifier: name.value });
  return new GeneralName(name.type === 'ip' ? { iPAddress: name.value } : { dNSName: name.value });
}

function extension(extnID: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

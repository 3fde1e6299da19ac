import type { X509Certificate } from 'node:crypto';

/**
 * RFC 8705 §2.1 (PKI mutual TLS): besides chaining to a configured CA (checked by binding/), the
 * client certificate's subject must match the one metadata value the client registered.
 */

type SubjectProperty =
  | 'tls_client_auth_subject_dn'
  | 'tls_client_auth_san_dns'
  | 'tls_client_auth_san_uri'
  | 'tls_client_auth_san_ip'
  | 'tls_client_auth_san_email';

const SAN_PREFIX: Record<Exclude<SubjectProperty, 'tls_client_auth_subject_dn'>, string> = {
  tls_client_auth_san_dns: 'DNS',
  tls_client_auth_san_uri: 'URI',
  tls_client_auth_san_ip: 'IP Address',
  tls_client_auth_san_email: 'email',
};

/** RFC 8705 §2.1.2: compares the certificate with the registered subject DN or SAN entry. */
export function certificateSubjectMatches(certificate: X509Certificate, property: SubjectProperty, expected: string): boolean {
  if (property === 'tls_client_auth_subject_dn') {
    return sameDistinguishedName(certificate.subject, expected);
  }
  const prefix = SAN_PREFIX[property];
  return subjectAltNames(certificate).some(([type, value]) => type === prefix && (type === 'DNS' || type === 'email' ? value.toLowerCase() === expected.toLowerCase() : value === expected));
}

/** Node renders SANs as `DNS:a, IP Address:1.2.3.4, URI:…`; values with commas are quoted JSON strings. */
export function subjectAltNames(certificate: X509Certificate): [string, string][] {
  const text = certificate.subjectAltName;
  if (!text) return [];
  const entries: [string, string][] = [];
  const pattern = /(DNS|URI|IP Address|email|othername|DirName|Registered ID):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (const [, type, raw] of text.matchAll(pattern)) {
    entries.push([type!, raw!.startsWith('"') ? (JSON.parse(raw!) as string) : raw!]);
  }
  return entries;
}

/**
 * Node prints a subject as one `type=value` per line, most significant first; RFC 4514 strings are
 * comma-separated, least significant first. Both are compared as multisets of attribute pairs, with
 * attribute types case-insensitive.
 */
function sameDistinguishedName(nodeSubject: string, rfc4514: string): boolean {
  const fromCertificate = nodeSubject.split('\n').filter(Boolean).map(normaliseAttribute);
  const fromConfig = splitUnescaped(rfc4514, ',').map(normaliseAttribute);
  if (fromCertificate.length !== fromConfig.length) return false;
  return [...fromCertificate].sort().join('\n') === [...fromConfig].sort().join('\n');
}

function normaliseAttribute(pair: string): string {
  const at = pair.indexOf('=');
  const type = pair.slice(0, at).trim().toUpperCase();
  const value = pair.slice(at + 1).trim().replace(/\\(.)/g, '$1');
  return `${type}=${value}`;
}

function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index]!;
    if (char === '\\' && index + 1 < text.length) {
      current += char + text[index + 1];
      index += 1;
    } else if (char === separator) {
      parts.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts.filter((part) => part.trim() !== '');
}

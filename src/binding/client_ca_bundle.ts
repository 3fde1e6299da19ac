import { X509Certificate } from 'node:crypto';

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * Why `pem` cannot serve as the trust anchors of `tls_client_auth` (RFC 8705 §2.1), or `undefined`
 * when it can: it must hold at least one PEM certificate, every block must be a CA certificate, and
 * nothing else may be in it. The answer never quotes the file's contents (it might be a private key).
 */
export function clientCaBundleProblem(pem: string): string | undefined {
  const blocks = [...pem.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) return 'holds no PEM certificate';
  for (const [index, [block, label]] of blocks.entries()) {
    if (label !== 'CERTIFICATE') return `block ${index + 1} is a ${label === undefined ? 'non-certificate' : label.toLowerCase()} block, not a certificate`;
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(block);
    } catch {
      return `block ${index + 1} is not a valid X.509 certificate`;
    }
    // A leaf as trust anchor would make exactly that certificate "CA-issued"; say what was meant.
    if (!x509.ca) return `certificate ${index + 1} (${x509.subject.replace(/\n/g, ', ')}) is not a CA certificate (basicConstraints CA:TRUE)`;
  }
  return undefined;
}

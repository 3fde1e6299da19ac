import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { clientCaBundleProblem } from '../binding/client_ca_bundle.js';
import { subjectAltNames } from '../provider/certificate_checks.js';
import { parseSpiffeId } from './spiffe_id.js';

/** The X.509 authorities of each configured SPIFFE trust domain, by trust domain name. */
export type SpiffeBundles = ReadonlyMap<string, readonly X509Certificate[]>;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Reads every trust domain's bundle now: a missing or unusable file fails the start (as a JWKS file
 * of a trusted issuer does). A bundle must hold CA certificates only (binding/client_ca_bundle.ts).
 */
export function loadSpiffeBundles(trustDomains: readonly { trustDomain: string; bundleFile: string }[]): SpiffeBundles {
  return new Map(trustDomains.map(({ trustDomain, bundleFile }, index) => {
    const pem = readFileSync(bundleFile, 'utf8');
    const problem = clientCaBundleProblem(pem);
    if (problem) throw new Error(`federation.spiffe.trustDomains[${index}].bundleFile (${bundleFile}) ${problem}`);
    return [trustDomain, [...pem.matchAll(PEM_CERTIFICATE)].map(([block]) => new X509Certificate(block))];
  }));
}

/**
 * Why `certificate` is not an X.509-SVID of `spiffeId` issued by its trust domain, or `undefined`
 * when it is. The answer goes to the ledger, never to the client.
 *
 * The checks are Tether's own, not OpenSSL's handshake verdict: the listener verifies against the
 * client CA (listeners.https.clientCaFile), and a certificate that chains to one trust domain's
 * bundle must never count for another trust domain, nor for the clients of the client CA.
 */
export function svidProblem(certificate: X509Certificate, spiffeId: string, bundles: SpiffeBundles, now = new Date()): string | undefined {
  // X.509-SVID §4.1 and §5.2: a leaf SVID is not a CA.
  if (certificate.ca) return 'the certificate is a CA certificate (basicConstraints CA:TRUE), not a leaf X.509-SVID';
  const uris = subjectAltNames(certificate).filter(([type]) => type === 'URI').map(([, value]) => value);
  // X.509-SVID §2: exactly one URI SAN, the SPIFFE ID.
  if (uris.length !== 1) return `an X.509-SVID has exactly one URI SAN; this certificate has ${uris.length}`;
  const [uri] = uris as [string];
  const id = parseSpiffeId(uri);
  if (!id) return 'the certificate\'s URI SAN is not a SPIFFE ID';
  if (uri !== spiffeId) return `SPIFFE ID ${JSON.stringify(uri)} is not the client's ${JSON.stringify(spiffeId)}`;
  if (!withinValidity(certificate, now)) return 'the X.509-SVID is expired or not yet valid';
  // X.509-SVID §5.1: the chain ends in the bundle of the SVID's own trust domain. Tether accepts an
  // SVID issued directly by one of the bundle's authorities (no intermediates from the client).
  const bundle = bundles.get(id.trustDomain) ?? [];
  const issuer = bundle.find((authority) => certificate.checkIssued(authority) && certificate.verify(authority.publicKey));
  if (!issuer) return `the X.509-SVID is not issued by an authority of trust domain ${JSON.stringify(id.trustDomain)}'s bundle`;
  if (!withinValidity(issuer, now)) return `the issuing authority of trust domain ${JSON.stringify(id.trustDomain)} is expired or not yet valid`;
  return undefined;
}

function withinValidity(certificate: X509Certificate, now: Date): boolean {
  return certificate.validFromDate <= now && now <= certificate.validToDate;
}

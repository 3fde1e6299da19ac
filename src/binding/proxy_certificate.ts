import { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { BindingError } from './binding_error.js';
import { thumbprintOf } from './certificate_thumbprint.js';
import { presentedCertificate, type PresentedCertificate } from './presented_certificate.js';

/**
 * Header names in use for a forwarded client certificate. `client-cert` is RFC 9440; the others are
 * conventions of nginx (`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`) and others.
 */
export type ClientCertificateHeader = 'client-cert' | 'x-ssl-client-cert' | 'ssl-client-cert' | 'x-client-cert' | (string & {});

/**
 * How the header encodes the certificate:
 * - `rfc9440`: RFC 9440 §2.1, a Structured Field byte sequence `:<base64 of DER>:` (RFC 8941 §3.3.5);
 * - `escaped-pem`: URL-escaped PEM of exactly one certificate, as nginx's `$ssl_client_escaped_cert`
 *   (which holds the client certificate alone). Anything after it, a chain included, is refused: when
 *   two values are joined into one, "the first certificate wins" would let the client's own value win.
 */
export type ClientCertificateHeaderFormat = 'rfc9440' | 'escaped-pem';

/** A trusted CA for forwarded certificates: PEM (one or several certificates), DER, or parsed. */
export type CertificateAuthorityInput = string | Buffer | X509Certificate;

/**
 * Which proxies may tell us the caller's certificate, and how. Read once per object (the compiled
 * form is cached by identity): build it at startup and do not mutate it.
 */
export interface ProxyCertificateOptions {
  /**
   * Addresses (`10.0.0.7`, `::1`) or CIDR blocks (`10.0.0.0/8`, `fd00::/8`) of the TLS-terminating
   * proxies. IPv4 rules also match IPv4-mapped IPv6 peers (`::ffff:10.0.0.7`) and vice versa. These
   * proxies must set the header once and remove any copy clients send (RFC 9440 §4); their own TLS
   * client certificate never counts as the caller's (see caller_certificate.ts).
   */
  trustedProxies: readonly string[];
  /** Header carrying the certificate; default `client-cert`. Case-insensitive. */
  header?: ClientCertificateHeader;
  /** Default `rfc9440` for `client-cert`, `escaped-pem` for any other header. */
  format?: ClientCertificateHeaderFormat;
  /**
   * CAs whose certificates count as `authorized` (the forwarded certificate is checked here, not
   * believed from the proxy: it may run with `ssl_verify_client optional_no_ca`). Without it, forwarded
   * certificates are never `authorized`, which still serves `self_signed_tls_client_auth` and
   * certificate-bound tokens. Each listed certificate is a trust anchor, intermediates included.
   */
  ca?: CertificateAuthorityInput | readonly CertificateAuthorityInput[];
}

/**
 * Request headers as {@link certificateFromProxyHeaders} reads them: `req.headersDistinct` (every
 * occurrence of a header, in order), or `req.headers` (repeats joined with ", ").
 */
export type ProxyRequestHeaders = IncomingHttpHeaders | NodeJS.Dict<string | string[]>;

/**
 * The client certificate a trusted proxy forwarded in a header, or `undefined` when there is none or
 * when `remoteAddress` is not a trusted proxy (the header is then ignored: anyone can send it).
 *
 * An empty header value means "no certificate" (nginx sends an empty `$ssl_client_escaped_cert` when
 * the client presented none). RFC 9440 §4: the header must occur exactly once and hold exactly one
 * certificate; a second occurrence means a client's copy got past the proxy, and which of the two is
 * the proxy's cannot be told, so the request is refused.
 *
 * @param headers - `req.headersDistinct` of the request, so that a repeated header is seen as such
 *   (`req.headers` joins repeats into one value, which the parsers then refuse as malformed)
 * @param remoteAddress - `req.socket.remoteAddress`, the peer of this TCP connection
 * @throws BindingError `ERR_CLIENT_CERT_HEADER` when a trusted proxy sent a value that is not a
 *   certificate in the configured format (and no other exception for any header value)
 * @throws BindingError `ERR_TRUSTED_PROXY_CONFIG` when `options` are invalid
 */
export function certificateFromProxyHeaders(
  headers: ProxyRequestHeaders,
  remoteAddress: string | undefined,
  options: ProxyCertificateOptions,
): PresentedCertificate | undefined {
  const trust = compiledTrust(options);
  const value = headers[trust.header];
  if (value === undefined) return undefined;
  if (!isTrustedPeer(trust, remoteAddress)) return undefined;
  const single = singleHeaderValue(value, trust.header).trim();
  if (single === '') return undefined;
  return presentedFrom(parsedHeaderValue(trust, single), Date.now());
}

/**
 * True when `remoteAddress` is one of the trusted proxies of `options`.
 *
 * @throws BindingError `ERR_TRUSTED_PROXY_CONFIG` when `options` are invalid
 */
export function isTrustedProxy(remoteAddress: string | undefined, options: ProxyCertificateOptions): boolean {
  return isTrustedPeer(compiledTrust(options), remoteAddress);
}

/**
 * Checks `options` now (at startup) rather than on the first proxied request.
 *
 * @throws BindingError `ERR_TRUSTED_PROXY_CONFIG` naming the bad entry
 */
export function assertProxyCertificateOptions(options: ProxyCertificateOptions): void {
  compiledTrust(options);
}

// ---------------------------------------------------------------------------------------------------
// Compiled options

interface ParsedCertificate {
  readonly der: Buffer;
  readonly thumbprint: string;
  readonly x509: X509Certificate;
  /** Issuer, signature and purpose checked once; time is checked on every use. */
  readonly chainError: string | undefined;
  readonly validFrom: number;
  readonly validTo: number;
}

interface CompiledTrust {
  readonly proxies: BlockList;
  readonly header: string;
  readonly format: ClientCertificateHeaderFormat;
  readonly authorities: readonly X509Certificate[];
  /** Parsed certificates by header value: a proxy forwards the same few certificates over and over. */
  readonly parsed: Map<string, ParsedCertificate>;
}

const PARSED_CACHE_SIZE = 1024;
const compiled = new WeakMap<ProxyCertificateOptions, CompiledTrust>();

function compiledTrust(options: ProxyCertificateOptions): CompiledTrust {
  let trust = compiled.get(options);
  if (!trust) {
    trust = compileTrust(options);
    compiled.set(options, trust);
  }
  return trust;
}

function compileTrust(options: ProxyCertificateOptions): CompiledTrust {
  if (!options || !Array.isArray(options.trustedProxies)) {
    throw configError('trustedProxies must be an array of IP addresses or CIDR blocks');
  }
  const header = (options.header ?? 'client-cert').toLowerCase();
  if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(header)) throw configError(`header ${JSON.stringify(options.header)} is not a header name`);
  const format = options.format ?? (header === 'client-cert' ? 'rfc9440' : 'escaped-pem');
  if (format !== 'rfc9440' && format !== 'escaped-pem') throw configError(`format ${JSON.stringify(format)} is not rfc9440 or escaped-pem`);
  return {
    proxies: blockListOf(options.trustedProxies),
    header,
    format,
    authorities: authoritiesOf(options.ca),
    parsed: new Map(),
  };
}

function blockListOf(entries: readonly string[]): BlockList {
  const list = new BlockList();
  entries.forEach((entry, index) => {
    const where = `trustedProxies[${index}] ${JSON.stringify(entry)}`;
    if (typeof entry !== 'string') throw configError(`${where} is not a string`);
    const [address = '', prefix, extra] = entry.trim().split('/');
    const family = familyOf(address);
    if (!family || extra !== undefined) throw configError(`${where} is not an IP address or CIDR block`);
    if (prefix === undefined) {
      list.addAddress(address, family);
      return;
    }
    const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (!(bits <= (family === 'ipv4' ? 32 : 128))) throw configError(`${where} has an invalid prefix length`);
    list.addSubnet(address, bits, family);
  });
  return list;
}

function authoritiesOf(input: ProxyCertificateOptions['ca']): X509Certificate[] {
  if (input === undefined) return [];
  const inputs: readonly CertificateAuthorityInput[] = Array.isArray(input) ? input : [input as CertificateAuthorityInput];
  return inputs.flatMap((item, index) => {
    try {
      if (item instanceof X509Certificate) return [item];
      if (typeof item === 'string') return pemBlocksOf(item).map((block) => new X509Certificate(block));
      return [new X509Certificate(item)];
    } catch (cause) {
      throw configError(`ca[${index}] is not a certificate`, cause);
    }
  });
}

function pemBlocksOf(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) throw new Error('no PEM certificate');
  return blocks;
}

function configError(message: string, cause?: unknown): BindingError {
  return new BindingError('ERR_TRUSTED_PROXY_CONFIG', `client certificate proxy options: ${message}`, { cause });
}

// ---------------------------------------------------------------------------------------------------
// Peer address

type Family = 'ipv4' | 'ipv6';

function familyOf(address: string): Family | undefined {
  const version = isIP(address);
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined;
}

function isTrustedPeer(trust: CompiledTrust, remoteAddress: string | undefined): boolean {
  if (!remoteAddress) return false;
  // A zone index (fe80::1%eth0) cannot be written in the configuration; match the address alone.
  const address = remoteAddress.replace(/%.*$/, '');
  const family = familyOf(address);
  // BlockList matches IPv4 rules against IPv4-mapped IPv6 addresses and the reverse.
  return family !== undefined && trust.proxies.check(address, family);
}

// ---------------------------------------------------------------------------------------------------
// Header value -> certificate

function singleHeaderValue(value: string | string[], header: string): string {
  if (typeof value === 'string') return value;
  // RFC 9440 §4: one occurrence, even when one of them is empty. (`req.headers` would have joined the
  // repeats with ", ", which the parsers refuse: neither form lets the first certificate win.)
  if (value.length <= 1) return value[0] ?? '';
  throw headerError(`${header} header was sent more than once`);
}

function parsedHeaderValue(trust: CompiledTrust, value: string): ParsedCertificate {
  const cached = trust.parsed.get(value);
  if (cached) {
    // Least recently used first in iteration order: re-insert on every hit.
    trust.parsed.delete(value);
    trust.parsed.set(value, cached);
    return cached;
  }
  const der = trust.format === 'rfc9440' ? derFromStructuredField(value, trust.header) : derFromEscapedPem(value, trust.header);
  const parsed = parseCertificate(der, trust);
  trust.parsed.set(value, parsed);
  if (trust.parsed.size > PARSED_CACHE_SIZE) trust.parsed.delete(trust.parsed.keys().next().value!);
  return parsed;
}

// RFC 9440 §2.1: Client-Cert is an Item whose value is a Byte Sequence (RFC 8941 §3.3.5), optionally
// with parameters (§3.1.2), which carry no meaning here and are skipped but must be well-formed.
const KEY = String.raw`[a-z*][a-z0-9_.*-]*`;
const BARE_ITEM = String.raw`(?:-?\d{1,15}(?:\.\d{1,3})?|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|[A-Za-z*][!#$%&'*+\-.^_\x60|~:/0-9A-Za-z]*|:[A-Za-z0-9+/=]*:|\?[01])`;
const STRUCTURED_BYTE_SEQUENCE = new RegExp(String.raw`^:([A-Za-z0-9+/=]*):((?:;\x20*${KEY}(?:=${BARE_ITEM})?)*)$`);

function derFromStructuredField(value: string, header: string): Buffer {
  // RFC 8941 §4.2: leading and trailing spaces are discarded (done by the caller's trim()).
  const match = STRUCTURED_BYTE_SEQUENCE.exec(value);
  if (!match) throw headerError(`${header} header is not an RFC 8941 byte sequence (:base64:)`);
  return decodeBase64(match[1]!, header);
}

// Exactly one certificate and nothing after it (the caller trims surrounding whitespace).
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----$/;

function derFromEscapedPem(value: string, header: string): Buffer {
  let pem: string;
  try {
    // Not the form decoder: a '+' left unescaped is base64, not a space.
    pem = decodeURIComponent(value);
  } catch (cause) {
    throw headerError(`${header} header is not valid URL-escaping`, cause);
  }
  const match = PEM_CERTIFICATE.exec(pem.trim());
  if (!match) throw headerError(`${header} header is not exactly one PEM certificate`);
  return decodeBase64(match[1]!.replace(/\s+/g, ''), header);
}

function decodeBase64(text: string, header: string): Buffer {
  // Buffer.from(…, 'base64') skips characters it does not know; check the alphabet and the length
  // first. Padding may be absent (RFC 8941 §3.3.5 tells parsers to accept that).
  const unpadded = text.replace(/={1,2}$/, '');
  const paddedCorrectly = unpadded.length === text.length || text.length % 4 === 0;
  if (text === '' || !/^[A-Za-z0-9+/]*$/.test(unpadded) || unpadded.length % 4 === 1 || !paddedCorrectly) {
    throw headerError(`${header} header does not hold valid base64`);
  }
  return Buffer.from(unpadded, 'base64');
}

function parseCertificate(der: Buffer, trust: CompiledTrust): ParsedCertificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (cause) {
    throw headerError(`${trust.header} header does not hold an X.509 certificate`, cause);
  }
  // The thumbprint must be of exactly the certificate: refuse trailing bytes the parser skipped.
  if (!x509.raw.equals(der)) throw headerError(`${trust.header} header holds bytes after the certificate`);
  const issuer = trust.authorities.find((authority) => isIssuedBy(x509, authority));
  return {
    der,
    thumbprint: thumbprintOf(der),
    x509,
    chainError: chainErrorOf(x509, issuer),
    validFrom: Math.max(x509.validFromDate.getTime(), issuer?.validFromDate.getTime() ?? -Infinity),
    validTo: Math.min(x509.validToDate.getTime(), issuer?.validToDate.getTime() ?? Infinity),
  };
}

function isIssuedBy(x509: X509Certificate, authority: X509Certificate): boolean {
  try {
    return x509.checkIssued(authority) && x509.verify(authority.publicKey);
  } catch {
    // A key type OpenSSL cannot verify with is simply not this certificate's issuer.
    return false;
  }
}

function isSelfSigned(x509: X509Certificate): boolean {
  // Not checkIssued(itself): that also demands keyCertSign, which a self-signed client certificate lacks.
  try {
    return x509.issuer === x509.subject && x509.verify(x509.publicKey);
  } catch {
    return false;
  }
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

function chainErrorOf(x509: X509Certificate, issuer: X509Certificate | undefined): string | undefined {
  if (!issuer) return isSelfSigned(x509) ? 'DEPTH_ZERO_SELF_SIGNED_CERT' : 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
  if (!issuer.ca) return 'INVALID_CA';
  // RFC 5280 §4.2.1.12: when the extension is present, the certificate is for those purposes only.
  const purposes = x509.keyUsage;
  if (purposes && purposes.length > 0 && !purposes.includes(CLIENT_AUTH) && !purposes.includes(ANY_EXTENDED_KEY_USAGE)) {
    return 'INVALID_PURPOSE';
  }
  return undefined;
}

function presentedFrom(parsed: ParsedCertificate, now: number): PresentedCertificate {
  const authorizationError =
    parsed.chainError ?? (now < parsed.validFrom ? 'CERT_NOT_YET_VALID' : now > parsed.validTo ? 'CERT_HAS_EXPIRED' : undefined);
  return presentedCertificate({
    source: 'proxy-header',
    der: parsed.der,
    thumbprint: parsed.thumbprint,
    x509: parsed.x509,
    authorized: authorizationError === undefined,
    authorizationError,
  });
}

function headerError(message: string, cause?: unknown): BindingError {
  return new BindingError('ERR_CLIENT_CERT_HEADER', message, { cause });
}

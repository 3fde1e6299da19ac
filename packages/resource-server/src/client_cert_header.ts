/**
 * The client certificate forwarded by a TLS-terminating proxy: RFC 9440 `Client-Cert` (a
 * Structured Field byte sequence `:base64(DER):`) or nginx's `X-SSL-Client-Cert`
 * (`$ssl_client_escaped_cert`, URL-escaped PEM). The one parser of such headers: the verifier's
 * middleware and Tether's own server (src/binding/proxy_certificate.ts) both use it. It is pure:
 * no I/O and no state beyond what its caller compiles once.
 *
 * Such a header is believed only when the connection comes from a configured proxy address (RFC
 * 9440 §3): from anyone else it is a claim the client makes about itself. The proxy must remove any
 * such header the client sent. From a trusted proxy the header is the only source of the client
 * certificate: the proxy's own TLS certificate is never the client's (RFC 8705 §3).
 *
 * RFC 9440 §4: the header must occur exactly once and hold exactly one certificate. A second
 * occurrence means a client's copy got past the proxy and which one is the proxy's cannot be told, so
 * it is refused; so is a value that holds anything after the certificate (a chain, or two values
 * joined by `node:http` as `a, b`, or bytes after the DER).
 *
 * @module
 */
import { X509Certificate } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { VerifierError } from './errors.js';
import { sha256Base64url } from './sha256.js';

/** The headers the verifier's middleware reads a forwarded certificate from. */
export type ClientCertificateHeader = 'client-cert' | 'x-ssl-client-cert';

/**
 * How a header encodes the certificate:
 * - `rfc9440`: RFC 9440 §2.1, a Structured Field byte sequence `:<base64 of DER>:` (RFC 8941 §3.3.5);
 * - `escaped-pem`: URL-escaped PEM of exactly one certificate, as nginx's `$ssl_client_escaped_cert`.
 */
export type ClientCertificateHeaderFormat = 'rfc9440' | 'escaped-pem';

/** A forwarded certificate, parsed: exactly the DER that was sent, and nothing after it. */
export interface ForwardedCertificate {
  readonly der: Buffer;
  /** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the DER. */
  readonly thumbprint: string;
  readonly x509: X509Certificate;
}

/** Largest header value accepted: a value larger than this is not one client certificate. */
export const MAX_CLIENT_CERT_HEADER_LENGTH = 16 * 1024;

/**
 * The trusted proxies as a `BlockList`: IPv4/IPv6 addresses or CIDR blocks (`10.0.0.0/8`,
 * `fd00::/8`). IPv4 rules also match IPv4-mapped IPv6 peers (`::ffff:10.0.0.7`) and the reverse.
 *
 * @throws TypeError naming the first entry that is not an address or CIDR block
 */
export function trustedProxyList(entries: readonly string[]): BlockList {
  if (!Array.isArray(entries)) throw new TypeError('trustedProxies must be an array of IP addresses or CIDR blocks');
  const list = new BlockList();
  entries.forEach((entry: unknown, index) => {
    const where = `trustedProxies[${index}] ${JSON.stringify(entry)}`;
    if (typeof entry !== 'string') throw new TypeError(`${where} is not a string`);
    const [address = '', prefix, extra] = entry.trim().split('/');
    const family = familyOf(address);
    if (family === undefined || extra !== undefined) throw new TypeError(`${where} is not an IP address or CIDR block`);
    if (prefix === undefined) {
      list.addAddress(address, family);
      return;
    }
    const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (!(bits <= (family === 'ipv4' ? 32 : 128))) throw new TypeError(`${where} has an invalid prefix length`);
    list.addSubnet(address, bits, family);
  });
  return list;
}

/** True when `remoteAddress` (the TCP peer, `req.socket.remoteAddress`) is in `list`. */
export function isTrustedPeer(list: BlockList, remoteAddress: string | undefined): boolean {
  if (!remoteAddress) return false;
  // A zone index (fe80::1%eth0) cannot be written in the configuration; match the address alone.
  const address = remoteAddress.replace(/%.*$/, '');
  const family = familyOf(address);
  // BlockList matches IPv4 rules against IPv4-mapped IPv6 addresses and the reverse.
  return family !== undefined && list.check(address, family);
}

function familyOf(address: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(address);
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined;
}

/**
 * The one value of the header, trimmed, or `undefined` when there is none. An empty value means "no
 * certificate" (nginx sends an empty `$ssl_client_escaped_cert` when the client presented none).
 * Pass `req.headersDistinct[name]` (every occurrence) so that a repeat is seen as such; a value
 * `node:http` joined with ", " is refused by the parsers.
 *
 * @throws VerifierError `ERR_CLIENT_CERT_HEADER` for a repeated or oversize header
 */
export function singleHeaderValue(value: string | readonly string[] | undefined, header: string): string | undefined {
  // RFC 9440 §4: one occurrence, even when one of them is empty.
  if (Array.isArray(value) && value.length > 1) throw headerError(`${header} header was sent more than once`);
  const single: unknown = Array.isArray(value) ? value[0] : value;
  if (single === undefined) return undefined;
  if (typeof single !== 'string' || single.length > MAX_CLIENT_CERT_HEADER_LENGTH) throw headerError(`${header} header is too large`);
  // RFC 8941 §4.2: leading and trailing spaces are discarded.
  const trimmed = single.trim();
  return trimmed === '' ? undefined : trimmed;
}

/**
 * Parses one header value (from {@link singleHeaderValue}) into exactly one X.509 certificate.
 *
 * @throws VerifierError `ERR_CLIENT_CERT_HEADER` naming what was wrong (never echoing the value)
 */
export function parseForwardedCertificate(value: string, format: ClientCertificateHeaderFormat, header: string): ForwardedCertificate {
  const der = format === 'rfc9440' ? derFromStructuredField(value, header) : derFromEscapedPem(value, header);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (cause) {
    throw headerError(`${header} header does not hold an X.509 certificate`, cause);
  }
  // The thumbprint must be of exactly the certificate: refuse trailing bytes the parser skipped.
  if (!x509.raw.equals(der)) throw headerError(`${header} header holds bytes after the certificate`);
  return { der, thumbprint: sha256Base64url(der), x509 };
}

// RFC 9440 §2.1: Client-Cert is an Item whose value is a Byte Sequence (RFC 8941 §3.3.5), optionally
// with parameters (§3.1.2), which carry no meaning here and are skipped but must be well-formed.
const KEY = String.raw`[a-z*][a-z0-9_.*-]*`;
const BARE_ITEM = String.raw`(?:-?\d{1,15}(?:\.\d{1,3})?|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|[A-Za-z*][!#$%&'*+\-.^_\x60|~:/0-9A-Za-z]*|:[A-Za-z0-9+/=]*:|\?[01])`;
const STRUCTURED_BYTE_SEQUENCE = new RegExp(String.raw`^:([A-Za-z0-9+/=]*):((?:;\x20*${KEY}(?:=${BARE_ITEM})?)*)$`);

function derFromStructuredField(value: string, header: string): Buffer {
  const match = STRUCTURED_BYTE_SEQUENCE.exec(value);
  if (!match) throw headerError(`${header} header is not an RFC 8941 byte sequence (:base64:)`);
  return decodeBase64(match[1]!, header);
}

// Exactly one certificate and nothing before or after it (the value is trimmed).
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----$/;

function derFromEscapedPem(value: string, header: string): Buffer {
  let pem: string;
  try {
    // Not the form decoder: a '+' left unescaped is base64, not a space.
    pem = decodeURIComponent(value);
  } catch (cause) {
    throw headerError(`${header} header is not valid URL-escaping`, cause);
  }
  // Not "the first block": with two values joined, the first may be the client's own.
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

function headerError(message: string, cause?: unknown): VerifierError {
  return new VerifierError('ERR_CLIENT_CERT_HEADER', message, { cause });
}

// ---------------------------------------------------------------------------------------------------
// The verifier middleware's reader

/** Options of {@link createClientCertificateHeaderReader}. */
export interface ClientCertificateHeaderOptions {
  /** Proxy addresses whose header is believed: IPv4/IPv6 addresses or CIDR ranges (`10.0.0.0/8`). */
  readonly trustedProxies: readonly string[];
  /** Which header carries the certificate (default `client-cert`, RFC 9440). */
  readonly header?: ClientCertificateHeader;
}

/** What a reader found. */
export type ProxyCertificate =
  /** The connection is not from a trusted proxy: use the TLS connection's own certificate. */
  | { readonly trusted: false }
  /** From a trusted proxy: the forwarded certificate's thumbprint, or `undefined` when none was forwarded. */
  | { readonly trusted: true; readonly thumbprint: string | undefined };

/**
 * Reads the forwarded certificate of a request; throws only {@link VerifierError}. Pass
 * `req.headersDistinct` (every occurrence of each header) so that a repeated header is seen as such;
 * `req.headers`, where `node:http` joins repeats with ", ", is refused as malformed when repeated.
 */
export type ClientCertificateHeaderReader = (
  headers: { readonly [name: string]: string | readonly string[] | undefined },
  remoteAddress: string | undefined,
) => ProxyCertificate;

/**
 * Creates a reader for the configured header, believed only from `trustedProxies`. Throws
 * `TypeError` at creation for an address that is not an IP address or CIDR range.
 */
export function createClientCertificateHeaderReader(options: ClientCertificateHeaderOptions): ClientCertificateHeaderReader {
  const proxies = trustedProxyList(options.trustedProxies);
  const header = options.header ?? 'client-cert';
  if (header !== 'client-cert' && header !== 'x-ssl-client-cert') throw new TypeError('header must be client-cert or x-ssl-client-cert');
  const format: ClientCertificateHeaderFormat = header === 'client-cert' ? 'rfc9440' : 'escaped-pem';
  return (headers, remoteAddress) => {
    if (!isTrustedPeer(proxies, remoteAddress)) return { trusted: false };
    try {
      const value = singleHeaderValue(headers[header], header);
      return { trusted: true, thumbprint: value === undefined ? undefined : parseForwardedCertificate(value, format, header).thumbprint };
    } catch (cause) {
      if (!(cause instanceof VerifierError)) throw cause;
      // The client is told only which header was wrong; the detail stays in `cause` for logs.
      throw new VerifierError('ERR_CLIENT_CERT_HEADER', `${header} header is malformed`, { cause });
    }
  };
}

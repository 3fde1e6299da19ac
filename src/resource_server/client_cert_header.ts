/**
 * The client certificate forwarded by a TLS-terminating proxy: RFC 9440 `Client-Cert` (a
 * Structured Field byte sequence `:base64(DER):`) or nginx's `X-SSL-Client-Cert`
 * (`$ssl_client_escaped_cert`, URL-escaped PEM).
 *
 * Such a header is believed only when the connection comes from a configured proxy address (RFC
 * 9440 §3): from anyone else it is a claim the client makes about itself. The proxy must remove any
 * such header the client sent. From a trusted proxy the header is the only source of the client
 * certificate: the proxy's own TLS certificate is never the client's (RFC 8705 §3).
 *
 * RFC 9440 §4: the header must occur exactly once and hold exactly one certificate. A second
 * occurrence means a client's copy got past the proxy and which one is the proxy's cannot be told, so
 * it is refused; so is a value that holds anything after the certificate (a chain, or two values
 * joined by `node:http` as `a, b`).
 *
 * @module
 */
import { BlockList, isIP } from 'node:net';
import { pemToDer, thumbprintOfDer } from './certificate.js';
import { VerifierError } from './errors.js';

/** The header a trusted proxy puts the client certificate in. */
export type ClientCertificateHeader = 'client-cert' | 'x-ssl-client-cert';

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

/** RFC 8941 §3.3.5 byte sequence: base64 between colons (padding may be missing, §4.2.7). */
const SF_BINARY = /^:((?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?):$/;
/** Largest header accepted: a certificate chain larger than this is not a client certificate. */
const MAX_HEADER_LENGTH = 16 * 1024;

/**
 * Creates a reader for the configured header, believed only from `trustedProxies`. Throws
 * `TypeError` at creation for an address that is not an IP address or CIDR range.
 */
export function createClientCertificateHeaderReader(options: ClientCertificateHeaderOptions): ClientCertificateHeaderReader {
  const proxies = trustedProxyList(options.trustedProxies);
  const header = options.header ?? 'client-cert';
  if (header !== 'client-cert' && header !== 'x-ssl-client-cert') throw new TypeError('header must be client-cert or x-ssl-client-cert');
  const decode = header === 'client-cert' ? derFromClientCertHeader : derFromEscapedPem;
  return (headers, remoteAddress) => {
    if (!isTrusted(proxies, remoteAddress)) return { trusted: false };
    const value = headers[header];
    if (Array.isArray(value) && value.length > 1) throw malformed(header);
    const single = Array.isArray(value) ? value[0] : value;
    // No header (or an empty one, which nginx sends when the client presented no certificate).
    if (single === undefined || single === '') return { trusted: true, thumbprint: undefined };
    if (typeof single !== 'string' || single.length > MAX_HEADER_LENGTH) throw malformed(header);
    return { trusted: true, thumbprint: thumbprintOfDer(decode(single, header)) };
  };
}

/** RFC 9440 §2.2: `Client-Cert: :MIIB...:`. */
function derFromClientCertHeader(value: string, header: string): Buffer {
  const match = SF_BINARY.exec(value.trim());
  const base64 = match?.[1];
  if (base64 === undefined || base64.length === 0) throw malformed(header);
  const der = Buffer.from(base64, 'base64');
  if (der[0] !== 0x30) throw malformed(header);
  return der;
}

/** Exactly one PEM certificate, nothing before or after it but whitespace. */
const SINGLE_PEM_CERTIFICATE = /^\s*-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*$/;

/** nginx `$ssl_client_escaped_cert`: the PEM of the client certificate alone, percent-encoded. */
function derFromEscapedPem(value: string, header: string): Buffer {
  let pem: string;
  try {
    pem = decodeURIComponent(value);
  } catch {
    throw malformed(header);
  }
  // Not "the first block": with two values joined, the first may be the client's own.
  if (!SINGLE_PEM_CERTIFICATE.test(pem)) throw malformed(header);
  const der = pemToDer(pem);
  if (der === undefined) throw malformed(header);
  return der;
}

function malformed(header: string): VerifierError {
  return new VerifierError('ERR_CLIENT_CERT_HEADER', `${header} header is malformed`);
}

function trustedProxyList(entries: readonly string[]): BlockList {
  if (!Array.isArray(entries)) throw new TypeError('trustedProxies must be an array of addresses or CIDR ranges');
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = String(entry).split('/');
    const family = isIP(address);
    if (family === 0) throw new TypeError(`trustedProxies: ${String(entry)} is not an IP address or CIDR range`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) {
      list.addAddress(address, type);
      continue;
    }
    const bits = Number(prefix);
    if (!/^\d+$/.test(prefix) || bits > (family === 4 ? 32 : 128)) throw new TypeError(`trustedProxies: ${String(entry)} has an invalid prefix`);
    list.addSubnet(address, bits, type);
  }
  return list;
}

/** True when `address` is in the list; IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as IPv4. */
function isTrusted(list: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const plain = mapped?.[1] ?? address;
  const family = isIP(plain);
  if (family === 0) return false;
  return list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
}

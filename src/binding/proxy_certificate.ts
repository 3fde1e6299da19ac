import { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { BlockList } from 'node:net';
import {
  isTrustedPeer as isInProxyList,
  isVerifierError,
  parseForwardedCertificate,
  singleHeaderValue as forwardedHeaderValue,
  trustedProxyList,
  type ClientCertificateHeaderFormat,
} from 'tether-oauth-resource-server';
import { BindingError } from './binding_error.js';
import { presentedCertificate, type PresentedCertificate } from './presented_certificate.js';

/**
 * Header names in use for a forwarded client certificate. `client-cert` is RFC 9440; the others are
 * conventions of nginx (`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`) and others.
 */
export type ClientCertificateHeader = 'client-cert' | 'x-ssl-client-cert' | 'ssl-client-cert' | 'x-client-cert' | (string & {});

/**
 * How the header encodes the certificate (the parser is the verifier package's, shared with its
 * middleware): `rfc9440`, an RFC 8941 byte sequence `:<base64 of DER>:`; `escaped-pem`, URL-escaped
 * PEM of exactly one certificate, as nginx's `$ssl_client_escaped_cert`. Anything after the
 * certificate, a chain included, is refused: when two values are joined into one, "the first
 * certificate wins" would let the client's own value win.
 */
export type { ClientCertificateHeaderFormat };

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
  const single = asBindingError(() => forwardedHeaderValue(value, trust.header));
  if (single === undefined) return undefined;
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
  try {
    return trustedProxyList(entries);
  } catch (cause) {
    throw configError((cause as Error).message, cause);
  }
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
// Peer address and header value: the verifier package's parser

function isTrustedPeer(trust: CompiledTrust, remoteAddress: string | undefined): boolean {
  return isInProxyList(trust.proxies, remoteAddress);
}

/** The parser throws the verifier's `VerifierError`; here it is a `BindingError` with the same message. */
function asBindingError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (isVerifierError(error)) throw headerError(error.message, error.cause);
    throw error;
  }
}

function parsedHeaderValue(trust: CompiledTrust, value: string): ParsedCertificate {
  const cached = trust.parsed.get(value);
  if (cached) {
    // Least recently used first in iteration order: re-insert on every hit.
    trust.parsed.delete(value);
    trust.parsed.set(value, cached);
    return cached;
  }
  const parsed = parseCertificate(value, trust);
  trust.parsed.set(value, parsed);
  if (trust.parsed.size > PARSED_CACHE_SIZE) trust.parsed.delete(trust.parsed.keys().next().value!);
  return parsed;
}

function parseCertificate(value: string, trust: CompiledTrust): ParsedCertificate {
  const { der, thumbprint, x509 } = asBindingError(() => parseForwardedCertificate(value, trust.format, trust.header));
  const issuer = trust.authorities.find((authority) => isIssuedBy(x509, authority));
  return {
    der,
    thumbprint,
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

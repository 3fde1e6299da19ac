/**
 * What every middleware shares: turning a `node:http` request into a {@link VerifyRequest}
 * (absolute URL, client certificate from the TLS socket or a trusted proxy), serving the RFC 9728
 * metadata document, and rendering errors. The koa, express and node middleware are thin over it.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { thumbprintOfDer } from './certificate.js';
import { createClientCertificateHeaderReader, type ClientCertificateHeader, type ClientCertificateHeaderReader } from './client_cert_header.js';
import { VerifierError } from './errors.js';
import { toHttpError, type ChallengeOptions, type HttpErrorResponse } from './http_error.js';
import {
  buildProtectedResourceMetadata,
  protectedResourceMetadataUrl,
  type ProtectedResourceMetadataOptions,
} from './protected_resource_metadata.js';
import type { AccessTokenClaims } from './verify_access_token.js';
import { createVerifier, type Verifier, type VerifierOptions, type VerifyRequest } from './verifier.js';
import { publicBaseUrlOf } from './request_uri.js';

/** HTTP-level options shared by all middleware. */
export interface HttpOptions {
  /**
   * The public origin (and optional path prefix) clients address this API by, e.g.
   * `https://api.example`. The request path is appended to it to form the URL that DPoP `htu` is
   * compared with. Without it the `Host` header and the socket's TLS state are used, which is right
   * only when clients connect directly; behind a proxy, set it.
   */
  readonly publicBaseUrl?: string;
  /** Proxies whose client-certificate header is believed (addresses or CIDR ranges). */
  readonly trustedProxies?: readonly string[];
  /** The header trusted proxies forward the certificate in (default `client-cert`, RFC 9440). */
  readonly clientCertificateHeader?: ClientCertificateHeader;
  /** Scopes every request through this middleware needs. */
  readonly requiredScopes?: readonly string[];
  /** The `realm` of the challenges (default: the audience). */
  readonly realm?: string;
  /** The RFC 9728 metadata document to serve, or `false` to serve none and omit `resource_metadata`. */
  readonly resourceMetadata?: ProtectedResourceMetadataOptions | false;
}

/** Middleware options: an existing verifier, or the options to create one, plus {@link HttpOptions}. */
export type MiddlewareOptions = HttpOptions & ({ readonly verifier: Verifier } | VerifierOptions);

/** The shared machinery behind a middleware instance. */
export interface HttpAdapter {
  readonly verifier: Verifier;
  /** Path of the metadata document, when one is served. */
  readonly metadataPath: string | undefined;
  /** The metadata document, serialized once. */
  readonly metadataJson: string | undefined;
  readonly challengeOptions: ChallengeOptions;
  /** Builds the verifier input from a request; `originalUrl` overrides `req.url` (mounted apps). */
  toVerifyRequest(req: IncomingMessage, originalUrl?: string): VerifyRequest;
  /** Verifies a request; rejects only with `VerifierError`. */
  verify(req: IncomingMessage, originalUrl?: string): Promise<AccessTokenClaims>;
  /** Renders an error. */
  render(err: unknown): HttpErrorResponse;
  /** True when this request asks for the metadata document. */
  isMetadataRequest(method: string | undefined, path: string): boolean;
}

/**
 * Client certificate thumbprints per TLS socket. The peer certificate is fixed for the life of a
 * connection, and reading it (`getPeerCertificate` builds a large object) on every request of a
 * keep-alive connection halves throughput, so it is read once per socket. `null` = no certificate.
 */
const socketThumbprints = new WeakMap<object, string | null>();

/** The `x5t#S256` thumbprint of the client certificate of a TLS socket, read once per socket. */
export function socketCertificateThumbprint(socket: IncomingMessage['socket']): string | undefined {
  const cached = socketThumbprints.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  let thumbprint: string | null = null;
  const tls = socket as Partial<TLSSocket>;
  if (tls.encrypted === true && typeof tls.getPeerCertificate === 'function') {
    const raw = tls.getPeerCertificate(true)?.raw;
    if (raw !== undefined && raw.length > 0) thumbprint = thumbprintOfDer(raw);
  }
  socketThumbprints.set(socket, thumbprint);
  return thumbprint ?? undefined;
}

/** Creates the adapter; throws `TypeError` for invalid options. */
export function createHttpAdapter(options: MiddlewareOptions): HttpAdapter {
  const verifier = 'verifier' in options ? options.verifier : createVerifier(options);
  const { settings } = verifier;
  const publicBase = options.publicBaseUrl === undefined ? undefined : publicBaseUrlOf(options.publicBaseUrl);
  const proxyReader: ClientCertificateHeaderReader | undefined =
    options.trustedProxies === undefined || options.trustedProxies.length === 0
      ? undefined
      : createClientCertificateHeaderReader({ trustedProxies: options.trustedProxies, header: options.clientCertificateHeader });
  const metadataOptions = options.resourceMetadata === false ? undefined : (options.resourceMetadata ?? {});
  const metadataUrl = metadataOptions === undefined ? undefined : (metadataOptions.url ?? protectedResourceMetadataUrl(settings.audience));
  const metadataPath = metadataUrl === undefined ? undefined : new URL(metadataUrl).pathname;
  const metadataJson =
    metadataOptions === undefined || metadataUrl === undefined ? undefined : JSON.stringify(buildProtectedResourceMetadata(settings, metadataOptions));
  const challengeOptions: ChallengeOptions = {
    realm: options.realm ?? settings.audience,
    resourceMetadataUrl: metadataUrl,
    dpopAlgorithms: settings.dpopAlgorithms,
  };
  const requiredScopes = options.requiredScopes;

  function clientCertificate(req: IncomingMessage): string | undefined {
    if (proxyReader !== undefined) {
      // Every occurrence (RFC 9440 §4: a repeated header is refused); req.headers would join them.
      const forwarded = proxyReader(req.headersDistinct ?? req.headers, req.socket.remoteAddress);
      // From a trusted proxy the socket's own certificate is the proxy's, never the client's.
      if (forwarded.trusted) return forwarded.thumbprint;
    }
    return socketCertificateThumbprint(req.socket);
  }

  function toVerifyRequest(req: IncomingMessage, originalUrl?: string): VerifyRequest {
    return {
      method: req.method ?? 'GET',
      url: absoluteUrl(req, originalUrl ?? req.url ?? '/', publicBase),
      headers: verifyRequestHeadersOf(req),
      clientCertificate: clientCertificate(req),
      requiredScopes,
    };
  }

  return {
    verifier,
    metadataPath,
    metadataJson,
    challengeOptions,
    toVerifyRequest,
    async verify(req, originalUrl) {
      let request: VerifyRequest;
      try {
        request = toVerifyRequest(req, originalUrl);
      } catch (err) {
        // A malformed proxy header is a VerifierError already; anything else is a bug, kept as cause.
        throw err instanceof VerifierError ? err : new VerifierError('ERR_INTERNAL', 'the request could not be read', { cause: err });
      }
      return verifier.verify(request);
    },
    render: (err) => toHttpError(err, challengeOptions),
    isMetadataRequest: (method, path) => metadataPath !== undefined && path === metadataPath && (method === 'GET' || method === 'HEAD'),
  };
}

/**
 * The request headers, with every `Authorization` field kept: `node:http` silently discards
 * duplicates of that header, and RFC 6750 §3.1 wants a request with several credentials refused.
 */
export function verifyRequestHeadersOf(req: IncomingMessage): VerifyRequest['headers'] {
  const authorization = req.headersDistinct?.authorization;
  if (authorization === undefined || authorization.length < 2) return req.headers;
  return { ...req.headers, authorization };
}

/**
 * The absolute URL of the request as the client addressed it. An absolute-form request target
 * (RFC 9112 §3.2.2) contributes only its path and query: the authority comes from configuration or
 * the Host header, never from the request line.
 */
function absoluteUrl(req: IncomingMessage, target: string, publicBase: string | undefined): string {
  const path = target.startsWith('/') ? target : pathOfAbsoluteTarget(target);
  if (publicBase !== undefined) return publicBase + path;
  const host = req.headers.host ?? (req.headers[':authority'] as string | undefined);
  if (host === undefined) return '';
  const scheme = (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  return `${scheme}://${host}${path}`;
}

function pathOfAbsoluteTarget(target: string): string {
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return '/';
  }
}

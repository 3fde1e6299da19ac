/**
 * Forward-auth: enforcement for an API that cannot check tokens itself. The gateway in front of it
 * (nginx `auth_request`, Envoy `ext_authz`, Traefik `forwardAuth`, Caddy `forward_auth`) sends each
 * request's headers here first; this server verifies the token as the API would (audience, lifetime,
 * signature, binding to the client certificate the gateway forwards or to a DPoP proof of the
 * original method and URL, the scopes of the request's route) and answers:
 *
 * - 200 with identity headers for the upstream ({@link IDENTITY_HEADERS}); the gateway copies them
 *   onto the proxied request and must overwrite or strip any the client sent;
 * - 401/403 with the RFC 6750 §3 / RFC 9449 §7.1 challenge in one `WWW-Authenticate` line (nginx
 *   1.22 passes on one line only), and `X-Tether-Authz: refused`;
 * - 400 `invalid_request` when the gateway's description of the request is malformed or ambiguous
 *   (a header missing or repeated, a path that would need normalization: forward_auth_path.ts);
 * - 403 to any peer that is not a configured gateway, whatever it sends.
 *
 * The URL a DPoP proof must name (`htu`) is the configured public base URL and the original path,
 * never a forwarded `Host` or `X-Forwarded-Host`. A request that matches no route is refused (default
 * deny).
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClientCertificateHeaderReader, isTrustedPeer, trustedProxyList, type ClientCertificateHeader } from './client_cert_header.js';
import { VerifierError } from './errors.js';
import { parseOriginalTarget } from './forward_auth_path.js';
import { createOriginalRequestReader, type DistinctHeaders, type ForwardAuthStyle } from './forward_auth_request.js';
import { compileRoutes, type ForwardAuthRoute } from './forward_auth_routes.js';
import { toHttpError, type ChallengeOptions } from './http_error.js';
import { publicBaseUrlOf } from './request_uri.js';
import type { BindingKind } from './binding.js';
import type { AccessTokenClaims } from './verify_access_token.js';
import { createVerifier, type Verifier, type VerifierOptions, type VerifyRequest } from './verifier.js';

/** The headers an accepted check answers with, for the gateway to copy onto the upstream request. */
export const IDENTITY_HEADERS = {
  clientId: 'x-tether-client-id',
  subject: 'x-tether-subject',
  scope: 'x-tether-scope',
  tokenId: 'x-tether-token-id',
  binding: 'x-tether-binding',
} as const;

/** Set on every refusal, so that a probe through the gateway can tell who refused (docs/gateways.md). */
export const REFUSED_BY_HEADER = 'x-tether-authz';

/** HTTP settings of the forward-auth handler. */
export interface ForwardAuthHttpOptions {
  /** The gateway's convention for the original method and URI (forward_auth_request.ts). */
  readonly style: ForwardAuthStyle;
  /** For `style: 'envoy'`: Envoy's `path_prefix` (e.g. `/check`), removed from the check request's path. */
  readonly envoyPathPrefix?: string;
  /**
   * The public origin (and optional path prefix) clients address the API by through the gateway,
   * e.g. `https://api.example`: the DPoP `htu` of a request is this and the original path.
   */
  readonly publicBaseUrl: string;
  /** The route table (forward_auth_routes.ts); a request matching no route is refused. */
  readonly routes: readonly ForwardAuthRoute[];
  /** The gateways' addresses or CIDR ranges; any other peer is refused. */
  readonly trustedGateways: readonly string[];
  /** The header the gateway forwards the client certificate in; without it no certificate is ever seen. */
  readonly clientCertificateHeader?: ClientCertificateHeader;
  /** The `realm` of the challenges (default: the audience). */
  readonly realm?: string;
  /** `resource_metadata` of the challenges (RFC 9728 §5.1), when the API publishes one. */
  readonly resourceMetadataUrl?: string;
  /** Told of every decision (for logs and metrics); must not throw. */
  readonly onDecision?: (decision: ForwardAuthDecision) => void;
}

/** Options of {@link createForwardAuthHandler}: a verifier or the options to make one, and the HTTP settings. */
export type ForwardAuthOptions = ForwardAuthHttpOptions & ({ readonly verifier: Verifier } | VerifierOptions);

/** One decision, as {@link ForwardAuthHttpOptions.onDecision} sees it. */
export interface ForwardAuthDecision {
  readonly allowed: boolean;
  readonly status: number;
  /** The verifier error code, `ERR_UNTRUSTED_PEER` or `ERR_NO_ROUTE`, for a refusal. */
  readonly code?: string;
  /** The TCP peer (the gateway, or whoever called). */
  readonly peer: string | undefined;
  readonly method?: string;
  /** The original path (without query), when it could be read. */
  readonly path?: string;
  readonly clientId?: string;
  readonly tokenId?: string;
}

/** A `node:http` request handler. */
export type ForwardAuthHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Creates the handler; throws `TypeError` naming the bad option. */
export function createForwardAuthHandler(options: ForwardAuthOptions): ForwardAuthHandler {
  const verifier = 'verifier' in options ? options.verifier : createVerifier(options);
  const publicBase = publicBaseUrlOf(options.publicBaseUrl, { strict: true });
  const matchRoute = compileRoutes(options.routes);
  if (!Array.isArray(options.trustedGateways) || options.trustedGateways.length === 0) {
    throw new TypeError('trustedGateways must list the gateways\' addresses (a forward-auth server answers its gateways only)');
  }
  const gateways = trustedProxyList(options.trustedGateways);
  const readOriginal = createOriginalRequestReader(options.style, options.envoyPathPrefix);
  const readCertificate = options.clientCertificateHeader === undefined
    ? undefined
    : createClientCertificateHeaderReader({ trustedProxies: options.trustedGateways, header: options.clientCertificateHeader });
  const challengeOptions: ChallengeOptions = {
    realm: options.realm ?? verifier.settings.audience,
    resourceMetadataUrl: options.resourceMetadataUrl,
    dpopAlgorithms: verifier.settings.dpopAlgorithms,
  };
  const tell = (decision: ForwardAuthDecision) => {
    try {
      options.onDecision?.(decision);
    } catch {
      // A logger's failure must not change the answer, which may already be on its way.
    }
  };

  async function decide(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const peer = req.socket.remoteAddress;
    if (!isTrustedPeer(gateways, peer)) {
      // Not a gateway: its headers are the caller's own claims about a request (RFC 9440 §3's rule).
      refuseFlat(res, 403, 'access_denied', 'this forward-auth endpoint answers its configured gateways only');
      tell({ allowed: false, status: 403, code: 'ERR_UNTRUSTED_PEER', peer });
      return;
    }
    const headers = (req.headersDistinct ?? {}) as DistinctHeaders;
    let method: string | undefined;
    let path: string | undefined;
    try {
      const original = readOriginal(req.method, req.url, headers);
      method = original.method;
      const target = parseOriginalTarget(original.target);
      path = target.rawPath;
      const route = matchRoute(original.method, target.segments);
      if (route === undefined) {
        refuseFlat(res, 403, 'access_denied', 'no route of this API allows this request');
        tell({ allowed: false, status: 403, code: 'ERR_NO_ROUTE', peer, method, path });
        return;
      }
      const request: VerifyRequest = {
        method: original.method,
        url: publicBase + target.rawPath + target.query,
        headers: { authorization: headers.authorization, dpop: headers.dpop },
        clientCertificate: certificateOf(headers, peer),
        requiredScopes: route.scopes,
      };
      const { claims, binding } = await verifier.verifyWithBinding(request);
      allow(res, claims, binding);
      tell({ allowed: true, status: 200, peer, method, path, clientId: claims.client_id, tokenId: claims.jti });
    } catch (err) {
      const status = refuse(res, err);
      tell({ allowed: false, status, code: err instanceof VerifierError ? err.code : 'ERR_INTERNAL', peer, method, path });
    }
  }

  function certificateOf(headers: DistinctHeaders, peer: string | undefined): string | undefined {
    if (readCertificate === undefined) return undefined;
    const forwarded = readCertificate(headers, peer);
    // The peer is a gateway (checked first): its header is the only source of the client's certificate.
    return forwarded.trusted ? forwarded.thumbprint : undefined;
  }

  function refuse(res: ServerResponse, err: unknown): number {
    const rendered = toHttpError(err, challengeOptions);
    res.statusCode = rendered.status;
    for (const [name, value] of Object.entries(rendered.headers)) {
      // RFC 9110 §11.6.1: several challenges may share one field line, comma-separated; nginx's
      // auth_request passes on only one line.
      res.setHeader(name, Array.isArray(value) ? value.join(', ') : (value as string));
    }
    res.setHeader(REFUSED_BY_HEADER, 'refused');
    res.end(JSON.stringify(rendered.body));
    return rendered.status;
  }

  return (req, res) => {
    // The check request's body, if any, is never read; nothing may escape as an unhandled rejection.
    req.resume();
    decide(req, res).catch(() => res.destroy());
  };
}

function allow(res: ServerResponse, claims: AccessTokenClaims, binding: BindingKind): void {
  res.statusCode = 200;
  res.setHeader('cache-control', 'no-store');
  res.setHeader(IDENTITY_HEADERS.clientId, headerSafe(claims.client_id));
  res.setHeader(IDENTITY_HEADERS.subject, headerSafe(claims.sub));
  res.setHeader(IDENTITY_HEADERS.scope, headerSafe(typeof claims.scope === 'string' ? claims.scope : ''));
  res.setHeader(IDENTITY_HEADERS.tokenId, headerSafe(claims.jti));
  res.setHeader(IDENTITY_HEADERS.binding, binding);
  res.end();
}

function refuseFlat(res: ServerResponse, status: number, error: string, description: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.setHeader(REFUSED_BY_HEADER, 'refused');
  res.end(JSON.stringify({ error, error_description: description }));
}

/**
 * A claim as a header value: visible ASCII and spaces as they are, anything else percent-encoded
 * (UTF-8), so that no claim can end a header line or be refused by `setHeader`.
 */
export function headerSafe(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value) && !value.includes('%')) return value;
  return [...Buffer.from(value, 'utf8')].map((byte) => (byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}


// ---------------------------------------------------------------------------------------------------
// A standalone server

/** Options of {@link startForwardAuthServer}. */
export type ForwardAuthServerOptions = ForwardAuthOptions & {
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** Port (default 0: any free one). */
  readonly port?: number;
  /**
   * Largest request head accepted (default 16 384 bytes, Node's); a larger one is answered 431 by
   * Node before the handler runs.
   */
  readonly maxHeaderSize?: number;
};

/** A running forward-auth server. */
export interface RunningForwardAuthServer {
  /** `http://host:port`. */
  readonly url: string;
  readonly server: Server;
  /** Stops accepting, ends idle connections, waits for the open ones (bounded by `graceMs`, default 5 s). */
  close(graceMs?: number): Promise<void>;
}

/**
 * Starts a plain-HTTP forward-auth server: the gateway is its only client and sits next to it
 * (loopback or a private network), so TLS is the deployment's choice (a TLS-terminating sidecar).
 */
export async function startForwardAuthServer(options: ForwardAuthServerOptions): Promise<RunningForwardAuthServer> {
  const handler = createForwardAuthHandler(options);
  const server = createServer({ maxHeaderSize: options.maxHeaderSize ?? 16_384, requestTimeout: 30_000, headersTimeout: 10_000 }, handler);
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const shown = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${shown}:${port}`,
    server,
    close: (graceMs = 5000) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      server.closeIdleConnections();
    }),
  };
}

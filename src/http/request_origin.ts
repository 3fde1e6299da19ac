import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import type { TetherConfig } from '../config/schema.js';

/**
 * Which of Tether's own origins a request is addressed to. Tether compares URLs (DPoP `htu`, the
 * client assertion's audience) and advertises them (discovery), so the origin they are built from is
 * decided here from the configuration and the connection, and only chosen, never taken, from the
 * request: the Host header and `X-Forwarded-*` are attacker-controlled (Keycloak CVE-2024-10039).
 *
 * - The origins Tether serves: the issuer's, and each listener's own (`scheme://host:port` where
 *   the scheme and port are the connection's and the host is the issuer's host name or the
 *   listener's configured address).
 * - The scheme is the connection's; a trusted proxy hop may say `X-Forwarded-Proto` (it terminated
 *   TLS, or did not). `X-Forwarded-Host` and `Forwarded` are never read: the proxy forwards the Host
 *   the client used, and Tether checks it like any other.
 * - A target that is none of these is refused (RFC 9110 §15.5.20, 421 Misdirected Request).
 */

/** The origins Tether serves, from the configuration. */
export interface ServedOrigins {
  /** `new URL(issuer).origin`. */
  issuerOrigin: string;
  /** Host names a listener answers to on its own origin, per listener kind. */
  listenerHostnames: Record<'https' | 'http', readonly string[]>;
}

/** What the connection (not the request) says. */
export interface ConnectionFacts {
  /** The TCP connection is TLS (the HTTPS listener). */
  encrypted: boolean;
  /** The local port the connection arrived on: the listener's real port, whatever the configuration asked for. */
  localPort: number | undefined;
  /** The peer is one of `trustedProxies`. */
  fromTrustedProxy: boolean;
}

/** A request addressed to a served origin. */
export interface ServedTarget {
  ok: true;
  /** The served origin the request is addressed to, e.g. `https://auth.example.com`. */
  origin: string;
  /** The scheme the client used is https (the connection's TLS, or a trusted proxy's). */
  secure: boolean;
  /** Origin-form request target (`/token?x`) when the request came in absolute form, else undefined. */
  originForm: string | undefined;
}

/** A request Tether will not answer; `reason` is private (logs, ledger), `description` public. */
export interface RefusedTarget {
  ok: false;
  status: 400 | 421;
  description: string;
  reason: string;
}

export function servedOriginsOf(config: Pick<TetherConfig, 'issuer' | 'listeners'>): ServedOrigins {
  const issuer = new URL(config.issuer);
  const namesFor = (kind: 'https' | 'http') => [...new Set([issuer.hostname, ...configuredHostname(config.listeners[kind]?.host)])];
  return { issuerOrigin: issuer.origin, listenerHostnames: { https: namesFor('https'), http: namesFor('http') } };
}

/** A bind address is a name clients can use, unless it is a wildcard. */
function configuredHostname(host: string | undefined): string[] {
  if (!host || host === '0.0.0.0' || host === '::' || host === '[::]') return [];
  return [isIP(host) === 6 ? `[${host}]` : host.toLowerCase()];
}

/**
 * The served origin `request` is addressed to, or why it is refused.
 *
 * @param request - `req.url` (the request target) and `req.headersDistinct`
 */
export function servedTargetOf(
  request: { url?: string | undefined; headersDistinct: Record<string, string[] | undefined> },
  connection: ConnectionFacts,
  served: ServedOrigins,
): ServedTarget | RefusedTarget {
  const scheme = schemeOf(request.headersDistinct, connection);
  if (!scheme) return refused(400, 'malformed X-Forwarded-Proto header', 'X-Forwarded-Proto from a trusted proxy is not exactly one of http, https');

  const target = targetOriginOf(request, scheme);
  if ('ok' in target) return target;

  if (target.origin !== served.issuerOrigin && !isThisListener(target.origin, connection, served)) {
    return refused(421, 'this server does not serve the requested host', `request for ${bounded(target.origin)}, which is neither the issuer nor this listener`);
  }
  return { ok: true, origin: target.origin, secure: scheme === 'https', originForm: target.originForm };
}

/** The origin names this listener itself (one of its hostnames and its port): asked only when it is not the issuer's. */
function isThisListener(origin: string, connection: ConnectionFacts, served: ServedOrigins): boolean {
  if (connection.localPort === undefined) return false;
  const listener = connection.encrypted ? 'https' : 'http';
  return served.listenerHostnames[listener].some((name) => originOf(listener, `${name}:${connection.localPort}`) === origin);
}

/** The scheme the client used: the connection's, or what a trusted proxy hop says it was. */
function schemeOf(headers: Record<string, string[] | undefined>, connection: ConnectionFacts): 'https' | 'http' | undefined {
  const socketScheme = connection.encrypted ? 'https' : 'http';
  const forwarded = connection.fromTrustedProxy ? headers['x-forwarded-proto'] : undefined;
  if (forwarded === undefined) return socketScheme;
  if (forwarded.length !== 1) return undefined;
  const value = forwarded[0]!.trim().toLowerCase();
  return value === 'https' || value === 'http' ? value : undefined;
}

// RFC 9110 §7.2 / RFC 3986 §3.2.2: a reg-name or IPv4 address, or a bracketed IPv6 address, and a port.
const HOST_HEADER = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;

function targetOriginOf(
  request: { url?: string | undefined; headersDistinct: Record<string, string[] | undefined> },
  scheme: 'https' | 'http',
): { origin: string; originForm: string | undefined } | RefusedTarget {
  const url = request.url ?? '/';
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    // RFC 9112 §3.2.2: an absolute-form target names the origin itself; the Host header is ignored.
    const absolute = URL.parse(url);
    if (!absolute || absolute.protocol !== `${scheme}:` || absolute.username || absolute.password || !absolute.host) {
      return refused(421, 'this server does not serve the requested host', `absolute-form target ${bounded(url)} over ${scheme}`);
    }
    return { origin: absolute.origin, originForm: `${absolute.pathname}${absolute.search}` };
  }
  // RFC 9112 §3.2: exactly one Host header, with a valid value.
  const hosts = request.headersDistinct.host;
  if (hosts === undefined || hosts.length !== 1) return refused(400, 'exactly one Host header is required', `${hosts?.length ?? 0} Host headers`);
  const host = hosts[0]!.trim();
  if (!HOST_HEADER.test(host)) return refused(400, 'malformed Host header', `malformed Host header ${bounded(JSON.stringify(host))}`);
  const origin = originOf(scheme, host);
  if (!origin) return refused(400, 'malformed Host header', `malformed Host header ${bounded(JSON.stringify(host))}`);
  return { origin, originForm: undefined };
}

/** The normalised origin (lower-case host, default port dropped), or undefined when it is not one. */
function originOf(scheme: string, authority: string): string {
  return URL.parse(`${scheme}://${authority}`)?.origin ?? '';
}

function refused(status: 400 | 421, description: string, reason: string): RefusedTarget {
  return { ok: false, status, description, reason };
}

function bounded(value: string, length = 200): string {
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

/**
 * The client's address for logs and the ledger: the peer's, or, from a trusted proxy hop, the
 * right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left were
 * written by the client and prove nothing). A malformed entry ends the walk.
 */
export function clientAddressOf(
  headers: IncomingHttpHeaders | Record<string, string[] | undefined>,
  peer: string | undefined,
  isTrusted: (address: string) => boolean,
): string | undefined {
  if (!peer || !isTrusted(peer)) return peer;
  const values = headers['x-forwarded-for'];
  const entries = (Array.isArray(values) ? values : values === undefined ? [] : [values]).join(',').split(',').map((entry) => entry.trim());
  let address = peer;
  for (const entry of entries.reverse()) {
    if (isIP(entry) === 0) break;
    address = entry;
    if (!isTrusted(entry)) break;
  }
  return address;
}

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from '../config/schema.js';

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  /**
   * CAs for client certificates; the chain check result is `socket.authorized`, never a refusal.
   * Only these count: without any, no client certificate is `authorized` (never Node's default roots).
   */
  clientCaPem?: string;
}

/**
 * TLS 1.2 cipher suites: ECDHE key exchange with AEAD encryption only (BCP 195 / RFC 9325 §4.2, FAPI
 * 2.0 Security Profile §5.2.1), so no CBC, static-RSA or DHE suite is offered. TLS 1.3 suites are all
 * AEAD: a list without `TLS_*` names leaves Node's TLS 1.3 defaults as they are.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The trust anchors for client certificates, always explicit: Node uses its default root store (the
 * public CAs, NODE_EXTRA_CA_CERTS, the system store) when `ca` is missing or an empty string, which
 * would make any publicly issued certificate `authorized` for tls_client_auth. An empty list trusts
 * no CA at all.
 */
function clientTrustOf(clientCaPem: string | undefined): string | string[] {
  return clientCaPem !== undefined && clientCaPem.trim() !== '' ? clientCaPem : [];
}

export interface ListenerSpec {
  host: string;
  port: number;
}

export interface RunningListener {
  kind: 'https' | 'http';
  server: http.Server;
  /** e.g. https://localhost:8443 (the port actually bound, when 0 was asked for). */
  origin: string;
}

/**
 * The HTTPS listener asks every caller for a certificate but accepts connections without one or with
 * one from an unknown CA: whether a certificate is needed, and whose, is decided per client by the
 * token path (RFC 8705 §2 allows self-signed certificates, and secret-authenticated DPoP clients need none).
 */
export async function listenHttps(
  handler: http.RequestListener, spec: ListenerSpec, tls: TlsMaterial, publicHost = 'localhost', limits: HttpLimits = DEFAULT_HTTP_LIMITS,
): Promise<RunningListener> {
  const server = https.createServer({
    cert: tls.certPem,
    key: tls.keyPem,
    ca: clientTrustOf(tls.clientCaPem),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    handshakeTimeout: millisecondsOf(limits.tlsHandshakeTimeout),
    ...slowClientOptions(limits),
  }, handler);
  return bind(limitConnections(server, limits), 'https', spec, publicHost);
}

export async function listenHttp(handler: http.RequestListener, spec: ListenerSpec, publicHost = 'localhost', limits: HttpLimits = DEFAULT_HTTP_LIMITS): Promise<RunningListener> {
  const server = http.createServer(slowClientOptions(limits), handler);
  return bind(limitConnections(server, limits), 'http', spec, publicHost);
}

/**
 * What a slow client may hold (config `http`, docs/configuration.md): Node answers 408 and closes a
 * connection whose head or request takes too long; it checks every quarter of the shorter timeout
 * (by default every 30 s, which would let a slowloris connection live half a minute longer).
 */
function slowClientOptions(limits: HttpLimits): http.ServerOptions {
  const headersTimeout = millisecondsOf(limits.headersTimeout);
  const requestTimeout = millisecondsOf(limits.requestTimeout);
  return {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: millisecondsOf(limits.keepAliveTimeout),
    maxHeaderSize: limits.maxHeaderSize,
    connectionsCheckingInterval: Math.max(50, Math.floor(Math.min(headersTimeout, requestTimeout) / 4)),
  };
}

/** Configuration durations are seconds (config/schema.ts); Node's options are milliseconds. */
function millisecondsOf(seconds: number): number {
  return Math.round(seconds * 1000);
}

/** Connections beyond `maxConnections` are closed as they arrive; a connection serves at most `maxRequestsPerSocket` requests. */
function limitConnections<S extends http.Server>(server: S, limits: HttpLimits): S {
  server.maxConnections = limits.maxConnections;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  return server;
}

async function bind(server: http.Server, kind: 'https' | 'http', spec: ListenerSpec, publicHost: string): Promise<RunningListener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(spec.port, spec.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return { kind, server, origin: `${kind}://${publicHost}:${port}` };
}

/**
 * Graceful stop: no new connections, idle keep-alive connections closed now, in-flight requests
 * finished (bounded by `graceMs`, after which the remaining connections are cut).
 */
export async function closeListener(listener: RunningListener, graceMs = 10_000): Promise<void> {
  const closed = new Promise<void>((resolve) => listener.server.close(() => resolve()));
  listener.server.closeIdleConnections();
  const timer = setTimeout(() => listener.server.closeAllConnections(), graceMs);
  timer.unref();
  await closed;
  clearTimeout(timer);
}

/**
 * Serves the orders API over HTTPS, asking every caller for a TLS client certificate: certificate-bound
 * tokens (RFC 8705) are checked against it. Connections without one are accepted (DPoP clients need
 * none); whether a certificate is needed is the verifier's decision per token.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';

/** The server's certificate and key (PEM). */
export interface ServerTls {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

/** A running orders API. */
export interface RunningOrdersApi {
  /** e.g. `https://localhost:9443` */
  readonly origin: string;
  close(): Promise<void>;
}

/** Listens on `host:port` (default 127.0.0.1 and any free port); `origin` names `publicHost` (default localhost). */
export async function listenOrdersApi(
  app: Koa,
  tls: ServerTls,
  options: { host?: string; port?: number; publicHost?: string } = {},
): Promise<RunningOrdersApi> {
  const server = https.createServer({
    cert: tls.certificatePem,
    key: tls.privateKeyPem,
    requestCert: true,
    // The token decides whether a certificate is needed, and whose; the chain is not what binds it.
    rejectUnauthorized: false,
    // BCP 195 / RFC 9325 §4.2, FAPI 2.0 §5.2.1: TLS 1.2 with ECDHE and AEAD suites only (TLS 1.3 keeps
    // Node's defaults, all AEAD). Tether's own listener uses the same list (src/http/listeners.ts).
    minVersion: 'TLSv1.2',
    ciphers: [
      'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
      'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
    ].join(':'),
    honorCipherOrder: true,
  }, app.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `https://${options.publicHost ?? 'localhost'}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

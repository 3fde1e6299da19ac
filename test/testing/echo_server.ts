/**
 * A loopback HTTPS server for the harness tests: it records every request (method, URL, headers,
 * client certificate thumbprint) and answers with whatever the test's handler says.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { thumbprintOf } from '../../src/binding/certificate_thumbprint.js';
import type { CertificateAndKey } from '../../src/keys/dev_pki.js';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  /** x5t#S256 of the client certificate, if one was presented. */
  readonly certificateThumbprint?: string;
  readonly body: string;
}

export type EchoHandler = (request: RecordedRequest, res: ServerResponse) => void;

export interface EchoServer {
  readonly origin: string;
  readonly requests: RecordedRequest[];
  handle(handler: EchoHandler): void;
  close(): Promise<void>;
}

/** Starts the server with `tls` (e.g. the harness PKI's server certificate); by default it answers 200. */
export async function startEchoServer(tls: CertificateAndKey): Promise<EchoServer> {
  const requests: RecordedRequest[] = [];
  let handler: EchoHandler = (_request, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  const server = https.createServer({ cert: tls.certificatePem, key: tls.privateKeyPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const raw = (req.socket as TLSSocket).getPeerCertificate?.(false)?.raw;
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        certificateThumbprint: raw && raw.length > 0 ? thumbprintOf(raw) : undefined,
        body,
      };
      requests.push(recorded);
      handler(recorded, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `https://localhost:${(server.address() as AddressInfo).port}`,
    requests,
    handle(next) {
      handler = next;
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { CertificateAndKey, Pki } from '../../src/keys/dev_pki.js';

/** A loopback server whose handler runs `inspect(req)` and answers its JSON. */
export interface TestServer {
  readonly origin: string;
  close(): Promise<void>;
}

type Inspect = (req: http.IncomingMessage) => unknown;

function answer(inspect: Inspect): http.RequestListener {
  return (req, res) => {
    let status = 200;
    let body: unknown;
    try {
      body = inspect(req);
    } catch (error) {
      status = 400;
      body = { error: (error as Error).name, code: (error as { code?: string }).code };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body ?? null));
  };
}

async function listening(server: http.Server | https.Server, host: string): Promise<TestServer> {
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    origin: `${server instanceof https.Server ? 'https' : 'http'}://${hostPart}:${port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** An mTLS listener like Tether's: asks for a certificate, verifies against the PKI's CA, never rejects. */
export function startTlsServer(pki: Pki, inspect: Inspect, host = '127.0.0.1'): Promise<TestServer> {
  const server = https.createServer(
    {
      cert: pki.server.certificatePem,
      key: pki.server.privateKeyPem,
      ca: pki.ca.certificatePem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    answer(inspect),
  );
  return listening(server, host);
}

export function startPlainServer(inspect: Inspect, host = '127.0.0.1'): Promise<TestServer> {
  return listening(http.createServer(answer(inspect)), host);
}

/** An undici agent trusting the PKI's CA, presenting `client` when given. */
export function agentFor(pki: Pki, client?: Pick<CertificateAndKey, 'certificatePem' | 'privateKeyPem'>): Agent {
  return new Agent({
    connections: 1,
    connect: {
      ca: pki.ca.certificatePem,
      ...(client ? { cert: client.certificatePem, key: client.privateKeyPem } : {}),
    },
  });
}

export async function getJson<T>(
  url: string,
  dispatcher: Agent | undefined,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const response = await request(url, { dispatcher, headers });
  return { status: response.statusCode, body: (await response.body.json()) as T };
}

/** `x5t#S256` as OpenSSL computes it: DER, SHA-256, base64url without padding. */
export function opensslThumbprint(certificatePem: string): string {
  return execFileSync('sh', ['-c', 'openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d "=\\n"'], {
    input: certificatePem,
    encoding: 'utf8',
  });
}

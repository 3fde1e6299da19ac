// Run in a child process whose NODE_EXTRA_CA_CERTS names a test CA (the parent sets it): reports,
// for a client certificate issued by that CA, whether each kind of listener calls it `authorized`.
// Input (argv[2]): a JSON file { serverCertPem, serverKeyPem, clientCertPem, clientKeyPem, otherCaPem }.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { closeListener, listenHttps } from '../../../src/http/listeners.js';

interface Input {
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  otherCaPem: string;
}

const input = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Input;

function answerAuthorization(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  const socket = req.socket as tls.TLSSocket;
  res.end(JSON.stringify({ authorized: socket.authorized, error: socket.authorizationError === null ? null : String(socket.authorizationError) }));
}

/** One TLS request presenting the client certificate; the server's verdict. */
function askAuthorization(port: number): Promise<{ authorized: boolean; error: string | null }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: input.clientCertPem, key: input.clientKeyPem }, () => {
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    let response = '';
    socket.on('data', (chunk: Buffer) => { response += chunk.toString(); });
    socket.once('end', () => resolve(JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { authorized: boolean; error: string | null }));
    socket.once('error', reject);
  });
}

async function viaNodeDefaults(): Promise<unknown> {
  // The flaw: `ca` left out, as Tether passed it when no clientCaFile was configured.
  const server = https.createServer({ cert: input.serverCertPem, key: input.serverKeyPem, requestCert: true, rejectUnauthorized: false }, answerAuthorization);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await askAuthorization((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

async function viaTetherListener(clientCaPem: string | undefined): Promise<unknown> {
  const listener = await listenHttps(answerAuthorization, { host: '127.0.0.1', port: 0 }, { certPem: input.serverCertPem, keyPem: input.serverKeyPem, clientCaPem });
  try {
    return await askAuthorization(Number(new URL(listener.origin).port));
  } finally {
    await closeListener(listener, 0);
  }
}

const results = {
  nodeDefaults: await viaNodeDefaults(),
  tetherWithoutCa: await viaTetherListener(undefined),
  tetherWithEmptyCa: await viaTetherListener(''),
  tetherWithAnotherCa: await viaTetherListener(input.otherCaPem),
};
process.stdout.write(`${JSON.stringify(results)}\n`);

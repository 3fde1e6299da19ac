import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { request, Agent } from 'undici';
import { httpLimitsSchema } from '../../src/config/schema.js';
import { closeListener, listenHttp, listenHttps, type RunningListener } from '../../src/http/listeners.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { startTestTether } from '../support/tether.js';
import { rowCounts } from '../storage/table_dump.js';

/**
 * Issue 12 item 6: a slow or greedy client holds a bounded share of a listener. Tether's own
 * listeners (http/listeners.ts) run here with small configured limits; every test asserts what the
 * server did (closed, 408, 413, 431), never how long it took.
 */

const LIMITS = {
  headersTimeout: '1s', requestTimeout: '2s', keepAliveTimeout: '1s', tlsHandshakeTimeout: '1s',
  maxHeaderSize: 8192, maxConnections: 4, maxBodySize: 2048,
};

let tether: RunningTether;
let https: RunningListener;
let http: RunningListener;

beforeAll(async () => {
  tether = await startTestTether({ config: { ...testConfig(), http: LIMITS } });
  expect(tether.config.http).toEqual(httpLimitsSchema.parse(LIMITS));
  const tlsMaterial = { certPem: tether.pki.server.certificatePem, keyPem: tether.pki.server.privateKeyPem, clientCaPem: tether.pki.ca.certificatePem };
  https = await listenHttps(tether.app.callback, { host: '127.0.0.1', port: 0 }, tlsMaterial, 'localhost', tether.config.http);
  http = await listenHttp(tether.app.callback, { host: '127.0.0.1', port: 0 }, 'localhost', tether.config.http);
});

afterAll(async () => {
  await Promise.all([https, http].filter(Boolean).map((listener) => closeListener(listener, 0)));
  await tether?.close();
});

const portOf = (listener: RunningListener) => Number(new URL(listener.origin).port);

/** A raw connection that records what the server sends and whether the server closed it. */
interface RawConnection {
  socket: net.Socket;
  received: () => string;
  closed: Promise<void>;
  isClosed: () => boolean;
}

async function connect(kind: 'https' | 'http' | 'tcp-to-https'): Promise<RawConnection> {
  const port = portOf(kind === 'http' ? http : https);
  const socket = kind === 'https'
    ? tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: tether.pki.ca.certificatePem })
    : net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => socket.once(kind === 'https' ? 'secureConnect' : 'connect', resolve).once('error', reject));
  let received = '';
  let isClosed = false;
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; resolve(); }));
  return { socket, received: () => received, closed, isClosed: () => isClosed };
}

/** A wait that does not keep the test process alive (the 60 s deadlines below are never reached). */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * Writes `bytes` one at a time, `intervalMs` apart, until the server closes the connection or
 * `maxBytes` are sent. Returns how many were sent before the close.
 */
async function trickle(connection: RawConnection, bytes: string, intervalMs: number, maxBytes: number): Promise<number> {
  let sent = 0;
  while (!connection.isClosed() && sent < maxBytes) {
    connection.socket.write(bytes[sent % bytes.length]!);
    sent += 1;
    await Promise.race([sleep(intervalMs), connection.closed]);
  }
  return sent;
}

describe('slow clients are cut off', () => {
  test.each(['https', 'http'] as const)('slowloris on %s: request head one byte at a time → 408, connection closed by the server', async (kind) => {
    const connection = await connect(kind);
    const head = `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${'a'.repeat(2000)}`;
    // At 4 bytes a second a 1 s headersTimeout is met after a handful; 200 bytes would be 50 s.
    const sent = await trickle(connection, head, 250, 200);
    expect(connection.isClosed()).toBe(true);
    expect(sent).toBeLessThan(200);
    expect(connection.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  test('a TLS connection that never sends its ClientHello is closed (tlsHandshakeTimeout)', async () => {
    const connection = await connect('tcp-to-https');
    await Promise.race([connection.closed, sleep(60_000)]);
    expect(connection.isClosed()).toBe(true);
    expect(connection.received()).toBe('');
  });

  test('a body sent one byte at a time → 408 at requestTimeout, connection closed, no 5xx', async () => {
    const connection = await connect('https');
    const body = `grant_type=client_credentials&client_id=dpop-client&resource=${encodeURIComponent(ORDERS)}`;
    connection.socket.write(`POST /token HTTP/1.1\r\nHost: ${new URL(tether.issuer).host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n`);
    const sent = await trickle(connection, body, 250, body.length - 1);
    expect(connection.isClosed()).toBe(true);
    expect(sent).toBeLessThan(body.length - 1);
    expect(connection.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  test('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const connection = await connect('https');
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await Promise.race([connection.closed, sleep(60_000)]);
    expect(connection.isClosed()).toBe(true);
    expect(connection.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*Keep-Alive: timeout=1\r\n[\s\S]*\{"status":"ok"\}$/);
  });

  test('a request head over maxHeaderSize → 431', async () => {
    const agent = new Agent({ connect: { ca: tether.pki.ca.certificatePem } });
    try {
      const response = await request(`${https.origin}/token`, {
        method: 'POST', body: 'grant_type=client_credentials', headers: { dpop: 'x'.repeat(10_000) }, dispatcher: agent,
      });
      expect(response.statusCode).toBe(431);
      await response.body.text();
    } finally {
      await agent.close();
    }
  });

  test('connections beyond maxConnections are closed as they arrive; a freed slot is usable again', async () => {
    const held = await Promise.all(Array.from({ length: 4 }, () => connect('http')));
    for (let attempt = 0; attempt < 200 && await new Promise<number>((resolve) => http.server.getConnections((_, count) => resolve(count))) < 4; attempt += 1) await sleep(10);
    const fifth = await connect('http');
    fifth.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await Promise.race([fifth.closed, sleep(60_000)]);
    expect(fifth.isClosed()).toBe(true);
    expect(fifth.received()).toBe('');

    held[0]!.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    await held[0]!.closed;
    expect(held[0]!.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    for (const connection of held) connection.socket.destroy();
    for (let attempt = 0; attempt < 200 && await new Promise<number>((resolve) => http.server.getConnections((_, count) => resolve(count))) > 0; attempt += 1) await sleep(10);
    const again = await request(`${http.origin}/healthz`);
    expect(again.statusCode).toBe(200);
    await again.body.text();
  });
});

describe('request bodies are bounded', () => {
  const tlsClient = () => new Agent({ connect: { ca: tether.pki.ca.certificatePem } });

  test('a 10 MB body with its Content-Length → 413 invalid_request before it is read; one ledger row', async () => {
    const before = await rowCounts(tether.database.knex);
    const connection = await connect('https');
    connection.socket.write(`POST /token HTTP/1.1\r\nHost: ${new URL(tether.issuer).host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`);
    connection.socket.write(`grant_type=client_credentials&scope=${'a'.repeat(4000)}`);
    await Promise.race([connection.closed, sleep(60_000)]);
    expect(connection.isClosed()).toBe(true);
    const [head, body] = connection.received().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n[\s\S]*Connection: close/);
    expect(JSON.parse(body!)).toEqual({ error: 'invalid_request', error_description: 'the request body is larger than 2048 bytes' });
    expect(await rowCounts(tether.database.knex)).toEqual({ ...before, ledger_events: before.ledger_events! + 1 });
    const [event] = await tether.database.knex('ledger_events').orderBy('id', 'desc').limit(1);
    expect(event).toMatchObject({ type: 'request.rejected', details: { route: 'token', status: 413, error: 'invalid_request' } });
  });

  test('the same with a real client (undici sends the 10 MB): 413, never a 500 or a hang', async () => {
    const agent = tlsClient();
    try {
      const answer = await request(`${https.origin}/token`, {
        method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.alloc(10 * 1024 * 1024, 'a'),
      }).then(async (response) => ({ status: response.statusCode, body: await response.body.json() }), (error: Error & { code?: string }) => ({ status: error.code, body: undefined }));
      // The server answers before reading the body and closes; the client either reads the 413 or
      // sees its upload cut (the answer is then lost), never anything else.
      if (typeof answer.status === 'number') {
        expect(answer).toEqual({ status: 413, body: { error: 'invalid_request', error_description: 'the request body is larger than 2048 bytes' } });
      } else {
        expect(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']).toContain(answer.status);
      }
    } finally {
      await agent.close();
    }
  });

  test('a 10 MB body without a length (chunked) → 400 invalid_request at oidc-provider\'s 56 KiB cap', async () => {
    const agent = tlsClient();
    try {
      const chunks = function* () {
        for (let n = 0; n < 160; n += 1) yield Buffer.alloc(64 * 1024, 'a');
      };
      const response = await request(`${https.origin}/token`, {
        method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Readable.from(chunks()),
      });
      expect(response.statusCode).toBe(400);
      expect(await response.body.json()).toEqual({ error: 'invalid_request', error_description: 'failed to parse the request body' });
    } finally {
      await agent.close();
    }
  });

  test('a body within the limit is served', async () => {
    const agent = tether.dispatcherFor('mtls-client');
    const response = await request(tether.tokenEndpoint, {
      method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=mtls-client&resource=${encodeURIComponent(ORDERS)}`,
    });
    expect(response.statusCode).toBe(200);
    await response.body.text();
  });
});

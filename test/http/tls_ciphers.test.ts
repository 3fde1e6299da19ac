// TLS versions and cipher suites of the HTTPS listener (issue 12, item 13): AEAD suites only (BCP 195 /
// RFC 9325 §4.2, FAPI 2.0 Security Profile §5.2.1), checked with OpenSSL's own client and node:tls.
import { execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import Koa from 'koa';
import { Agent } from 'undici';
import { listenOrdersApi, type RunningOrdersApi } from '../../examples/orders_api/server.js';
import { closeListener, listenHttps, TLS12_CIPHERS, type RunningListener } from '../../src/http/listeners.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { createEphemeralPki } from '../../src/keys/dev_pki.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether } from '../support/tether.js';

const run = promisify(execFile);

interface Handshake {
  ok: boolean;
  output: string;
}

/** `openssl s_client` against `port`, offering only `options` (e.g. `-tls1_2 -cipher X`). Async: the server runs in this process. */
function opensslHandshake(port: number, options: string[]): Promise<Handshake> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...options];
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    // End of input: s_client closes the connection once the handshake is done (or failed).
    child.stdin.end();
    const timer = setTimeout(() => child.kill(), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, output });
    });
  });
}

function expectNegotiated(handshake: Handshake, version: string, cipher: string): void {
  expect(handshake.output).toContain(`New, ${version}, Cipher is ${cipher}`);
}

function expectRefusedByServer(handshake: Handshake): void {
  expect(handshake.ok).toBe(false);
  // The server's handshake_failure alert (RFC 8446 §6.2, alert 40): the client did offer the suite.
  expect(handshake.output).toMatch(/alert handshake failure|SSL alert number 40/);
  expect(handshake.output).not.toMatch(/no cipher match/);
}

/** node:tls client handshake with the given suites and versions; resolves the negotiated cipher or the error code. */
function nodeHandshake(port: number, options: tls.ConnectionOptions, ca: string): Promise<{ cipher?: string; version?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ...options }, () => {
      const result = { cipher: socket.getCipher().name, version: socket.getProtocol() ?? undefined };
      socket.end();
      resolve(result);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
  });
}

describe('the Tether HTTPS listener (ECDSA server certificate)', () => {
  let tether: RunningTether;
  let port: number;

  beforeAll(async () => {
    tether = await startTestTether({ config: testConfig() });
    port = Number(new URL(tether.issuer).port);
  });

  afterAll(async () => {
    await tether?.close();
  });

  test.each(['ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA'])(
    'TLS 1.2 with the CBC suite %s is refused by the server',
    async (cipher) => {
      expectRefusedByServer(await opensslHandshake(port, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`]));
    },
  );

  test.each(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'])(
    'TLS 1.2 with the AEAD suite %s is accepted',
    async (cipher) => {
      expectNegotiated(await opensslHandshake(port, ['-tls1_2', '-cipher', cipher]), 'TLSv1.2', cipher);
    },
  );

  test.each(['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'])(
    'TLS 1.3 keeps its default suite %s',
    async (suite) => {
      expectNegotiated(await opensslHandshake(port, ['-tls1_3', '-ciphersuites', suite]), 'TLSv1.3', suite);
    },
  );

  test('TLS 1.1 is refused', async () => {
    const handshake = await opensslHandshake(port, ['-tls1_1', '-cipher', 'ALL:@SECLEVEL=0']);
    expect(handshake.ok).toBe(false);
    // The server's protocol_version alert (RFC 8446 §6.2, alert 70).
    expect(handshake.output).toMatch(/alert protocol version|SSL alert number 70/);
  });

  test('node:tls: a CBC-only TLS 1.2 client fails the handshake; an AEAD one gets a token over it', async () => {
    const ca = tether.pki.ca.certificatePem;
    const refused = await nodeHandshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384' }, ca);
    expect(refused.error).toMatch(/^ERR_SSL_.*ALERT_HANDSHAKE_FAILURE$/);
    const accepted = await nodeHandshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' }, ca);
    expect(accepted).toEqual({ cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', version: 'TLSv1.2' });

    const worker = tether.pki.clients['mtls-client']!;
    const agent = new Agent({ connect: { ca, cert: worker.certificatePem, key: worker.privateKeyPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' } });
    try {
      const { status } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'mtls-client', resource: ORDERS }, { dispatcher: agent });
      expect(status).toBe(200);
    } finally {
      await agent.close();
    }
  });
});

describe('listenHttps with an RSA server certificate', () => {
  let listener: RunningListener;
  let port: number;
  let certPem: string;

  beforeAll(async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-tls-'));
    try {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const keyFile = path.join(dir, 'key.pem');
      await writeFile(keyFile, keyPem);
      await run('openssl', ['req', '-x509', '-key', keyFile, '-out', path.join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-days', '2', '-addext', 'subjectAltName=DNS:localhost']);
      certPem = await readFile(path.join(dir, 'cert.pem'), 'utf8');
      listener = await listenHttps((_req, res) => res.end('ok'), { host: '127.0.0.1', port: 0 }, { certPem, keyPem });
      port = Number(new URL(listener.origin).port);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  afterAll(async () => {
    if (listener) await closeListener(listener, 0);
  });

  // The suites the review found accepted (static RSA and ECDHE with CBC).
  test.each(['AES128-SHA256', 'AES256-SHA256', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA256', 'ECDHE-RSA-AES256-SHA384', 'ECDHE-RSA-AES128-SHA', 'DHE-RSA-AES128-GCM-SHA256'])(
    'TLS 1.2 with %s (CBC, static RSA key exchange or DHE) is refused by the server',
    async (cipher) => {
      expectRefusedByServer(await opensslHandshake(port, ['-tls1_2', '-cipher', `${cipher}:@SECLEVEL=0`]));
    },
  );

  test.each(['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'])(
    'TLS 1.2 with the AEAD suite %s is accepted',
    async (cipher) => {
      expectNegotiated(await opensslHandshake(port, ['-tls1_2', '-cipher', cipher]), 'TLSv1.2', cipher);
    },
  );

  test('the configured list is ECDHE with AEAD only', () => {
    for (const suite of TLS12_CIPHERS.split(':')) expect(suite).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  });
});

describe('the example orders API (examples/orders_api/server.ts) serves the same suites', () => {
  let api: RunningOrdersApi;
  let port: number;

  beforeAll(async () => {
    const pki = await createEphemeralPki();
    api = await listenOrdersApi(new Koa(), pki.server);
    port = Number(new URL(api.origin).port);
  });

  afterAll(async () => {
    await api?.close();
  });

  test('TLS 1.2 CBC refused, AEAD accepted', async () => {
    expectRefusedByServer(await opensslHandshake(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0']));
    expectNegotiated(await opensslHandshake(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']), 'TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256');
  });
});

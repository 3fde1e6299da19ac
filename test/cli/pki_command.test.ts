import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { registerPkiCommands } from '../../src/cli/pki_command.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import { openTestDatabase } from '../support/database.js';
import { startTether } from '../../src/testing/start_tether.js';
import { Captured } from './cli_support.js';

// `tether pki init --config FILE`: the production PKI made from the configuration it serves.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
// As root the key can be given to the image's node user; otherwise only to oneself.
const OWNER = process.getuid?.() === 0 ? { uid: 1000, gid: 1000 } : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

let workdir: string;
let configFile: string;

beforeEach(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-pki-'));
  configFile = path.join(workdir, 'deploy', 'tether.config.yaml');
  await mkdir(path.dirname(configFile));
  await copyFile(path.join(ROOT, 'deploy', 'tether.config.yaml'), configFile);
});

afterEach(async () => {
  await rm(workdir, { recursive: true, force: true });
});

async function pkiInit(...args: string[]): Promise<{ exitCode: number; out: string; err: string }> {
  const program = new Command('tether').exitOverride();
  const out = new Captured();
  const err = new Captured();
  registerPkiCommands(program, out, err);
  const previous = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'tether', 'pki', 'init', '--config', configFile, ...args]);
    return { exitCode: Number(process.exitCode ?? 0), out: out.text, err: err.text };
  } finally {
    process.exitCode = previous;
  }
}

const deployPath = (...parts: string[]) => path.join(workdir, 'deploy', ...parts);
const read = (...parts: string[]) => readFile(deployPath(...parts), 'utf8');
const modeOf = async (...parts: string[]) => (await stat(deployPath(...parts))).mode & 0o777;

async function editConfig(edit: (raw: Record<string, unknown> & { clients: Record<string, unknown>[] }) => void): Promise<void> {
  const raw = parseYaml(await readFile(configFile, 'utf8')) as Record<string, unknown> & { clients: Record<string, unknown>[] };
  edit(raw);
  await writeFile(configFile, stringifyYaml(raw));
}

function issued(certificatePem: string, caPem: string): boolean {
  const certificate = new X509Certificate(certificatePem);
  const ca = new X509Certificate(caPem);
  return certificate.checkIssued(ca) && certificate.verify(ca.publicKey);
}

describe('tether pki init', () => {
  test('makes the PKI deploy/tether.config.yaml names: server files where the listener reads them, private keys apart, modes for a container', async () => {
    const result = await pkiInit('--owner', `${OWNER.uid}:${OWNER.gid}`);
    expect({ exitCode: result.exitCode, err: result.err }).toEqual({ exitCode: 0, err: '' });
    expect(result.out).toContain(`server key, mode 600, owner ${OWNER.uid}:${OWNER.gid}`);

    // The private folder: the CA's key and the clients' keys, for the owner only.
    expect(await modeOf('pki')).toBe(0o700);
    expect(await modeOf('pki', 'ca.key.pem')).toBe(0o600);
    expect(await modeOf('pki', 'clients', 'orders-worker.key.pem')).toBe(0o600);
    // The server's folder: reachable and its certificates readable by any user; the key by its owner.
    expect(await modeOf('tls')).toBe(0o755);
    expect(await modeOf('tls', 'server.pem')).toBe(0o644);
    expect(await modeOf('tls', 'ca.pem')).toBe(0o644);
    const key = await stat(deployPath('tls', 'server.key.pem'));
    expect({ mode: key.mode & 0o777, uid: key.uid, gid: key.gid }).toEqual({ mode: 0o600, ...OWNER });
    expect((await readdir(deployPath('tls'))).sort()).toEqual(['ca.pem', 'server.key.pem', 'server.pem']);

    const ca = await read('tls', 'ca.pem');
    expect(ca).toBe(await read('pki', 'ca.pem'));
    const server = new X509Certificate(await read('tls', 'server.pem'));
    expect(issued(await read('tls', 'server.pem'), ca)).toBe(true);
    expect(server.checkPrivateKey(createPrivateKey(await read('tls', 'server.key.pem')))).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.keyUsage).toEqual([SERVER_AUTH]);
    expect(server.subject).toBe('CN=localhost');
    expect(new X509Certificate(ca).subject).toMatch(/^CN=Tether CA [0-9a-f]{8}\nO=Tether$/);
    const client = new X509Certificate(await read('pki', 'clients', 'orders-worker.pem'));
    expect({ subject: client.subject, keyUsage: client.keyUsage, issued: issued(client.toString(), ca) }).toEqual({ subject: 'CN=orders-worker', keyUsage: [CLIENT_AUTH], issued: true });
  });

  test('the certificates it issues are the ones the deploy/ configuration accepts at the token endpoint (real mTLS)', async () => {
    expect((await pkiInit()).exitCode).toBe(0);
    const raw = parseYaml(await readFile(configFile, 'utf8')) as { resources: unknown[]; clients: { id: string }[] };
    const pki: Pki = {
      ca: { certificatePem: await read('tls', 'ca.pem'), privateKeyPem: await read('pki', 'ca.key.pem'), thumbprint: '' },
      server: { certificatePem: await read('tls', 'server.pem'), privateKeyPem: await read('tls', 'server.key.pem'), thumbprint: '', hostnames: ['localhost'] },
      clients: { 'orders-worker': { name: 'orders-worker', certificatePem: await read('pki', 'clients', 'orders-worker.pem'), privateKeyPem: await read('pki', 'clients', 'orders-worker.key.pem'), thumbprint: '' } },
    };
    const database = await openTestDatabase();
    const tether = await startTether({ config: { resources: raw.resources, clients: raw.clients }, pki, database });
    try {
      const token = await tether.token({ client: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read' });
      const thumbprint = createHash('sha256').update(new X509Certificate(pki.clients['orders-worker']!.certificatePem).raw).digest('base64url');
      expect({ aud: token.claims?.aud, cnf: token.claims?.cnf }).toEqual({ aud: 'https://orders.example.test', cnf: { 'x5t#S256': thumbprint } });
    } finally {
      await tether.close();
      await database.close();
    }
  });

  test('running it again keeps the CA and every valid certificate, and the key owner even without --owner; it adds clients and hosts', async () => {
    expect((await pkiInit('--owner', `${OWNER.uid}:${OWNER.gid}`)).exitCode).toBe(0);
    const [ca, caKey, server, client] = await Promise.all([read('pki', 'ca.pem'), read('pki', 'ca.key.pem'), read('tls', 'server.pem'), read('pki', 'clients', 'orders-worker.pem')]);

    const again = await pkiInit();
    expect(again.exitCode).toBe(0);
    expect(again.out).toContain('nothing to issue');
    expect(await Promise.all([read('pki', 'ca.pem'), read('pki', 'ca.key.pem'), read('tls', 'server.pem'), read('pki', 'clients', 'orders-worker.pem')])).toEqual([ca, caKey, server, client]);
    const key = await stat(deployPath('tls', 'server.key.pem'));
    expect({ uid: key.uid, gid: key.gid, mode: key.mode & 0o777 }).toEqual({ ...OWNER, mode: 0o600 });

    await editConfig((raw) => {
      raw.clients.push({
        id: 'billing-job', owner: 'team-billing', purpose: 'nightly invoices', binding: 'mtls',
        auth: { method: 'tls_client_auth', subjectDn: 'CN=billing-job' }, resources: { 'https://orders.example.test': ['orders:read'] },
      });
    });
    const added = await pkiInit('--host', 'tether.internal.example', '--host', '10.0.0.7');
    expect(added.exitCode).toBe(0);
    expect(await read('pki', 'ca.pem')).toBe(ca);
    expect(await read('pki', 'clients', 'orders-worker.pem')).toBe(client);
    expect(issued(await read('pki', 'clients', 'billing-job.pem'), ca)).toBe(true);
    const reissued = new X509Certificate(await read('tls', 'server.pem'));
    expect(reissued.subjectAltName).toBe('DNS:localhost, DNS:tether.internal.example, IP Address:10.0.0.7');
    expect(issued(reissued.toString(), ca)).toBe(true);
  });

  test('refuses a registered subject its CA does not issue (the issue\'s "CN=orders-worker,O=Example"), before writing the server files', async () => {
    await editConfig((raw) => {
      raw.clients[0]!.auth = { method: 'tls_client_auth', subjectDn: 'CN=orders-worker,O=Example' };
    });
    const result = await pkiInit();
    expect(result.exitCode).toBe(2);
    expect(result.err).toBe('tether: pki init: clients[0].auth.subjectDn is "CN=orders-worker,O=Example", but the certificate issued to orders-worker has subject "CN=orders-worker" and DNS:orders-worker (tether pki issues CN=<client id>; use subjectDn: "CN=<client id>")\n');
    expect(existsSync(deployPath('tls'))).toBe(false);
  });

  test('a SAN registration (sanDns) is checked the way the token endpoint checks it', async () => {
    await editConfig((raw) => {
      raw.clients[0]!.auth = { method: 'tls_client_auth', sanDns: 'orders-worker' };
    });
    expect((await pkiInit()).exitCode).toBe(0);
    await editConfig((raw) => {
      raw.clients[0]!.auth = { method: 'tls_client_auth', sanDns: 'orders-worker.example' };
    });
    const refused = await pkiInit();
    expect(refused.exitCode).toBe(2);
    expect(refused.err).toMatch(/^tether: pki init: clients\[0\]\.auth\.sanDns is "orders-worker\.example", but the certificate issued to orders-worker/);
  });

  test('leaves a server certificate or client CA it did not issue alone', async () => {
    const foreign = await createEphemeralPki();
    await mkdir(deployPath('tls'));
    await writeFile(deployPath('tls', 'server.pem'), foreign.server.certificatePem);
    const refused = await pkiInit();
    expect(refused.exitCode).toBe(2);
    expect(refused.err).toMatch(/tls\/server\.pem holds a certificate that .*pki\/ca\.pem did not issue; tether pki leaves it alone/);
    expect(await read('tls', 'server.pem')).toBe(foreign.server.certificatePem);
    expect(existsSync(deployPath('tls', 'server.key.pem'))).toBe(false);

    await rm(deployPath('tls', 'server.pem'));
    await writeFile(deployPath('tls', 'ca.pem'), foreign.ca.certificatePem);
    const refusedCa = await pkiInit();
    expect(refusedCa.exitCode).toBe(2);
    expect(refusedCa.err).toMatch(/tls\/ca\.pem is not the CA certificate .*pki\/ca\.pem; tether pki leaves it alone/);
    expect(await read('tls', 'ca.pem')).toBe(foreign.ca.certificatePem);
  });

  test('warns when the configuration is not readable by the owner given the key; only root may give the key away', async () => {
    await chmod(configFile, 0o600);
    const other = { uid: OWNER.uid + 1, gid: OWNER.gid + 1 };
    const result = await pkiInit('--owner', `${other.uid}:${other.gid}`);
    if (process.getuid?.() === 0) {
      expect(result).toEqual({
        exitCode: 0, out: expect.any(String),
        err: `tether: pki init: warning: ${configFile} is not readable by ${other.uid}:${other.gid}; a container running as that user cannot read it (chmod a+r ${configFile})\n`,
      });
    } else {
      expect({ exitCode: result.exitCode, err: result.err }).toEqual({
        exitCode: 2, err: `tether: pki init: cannot give the server key to ${other.uid}:${other.gid} (EPERM): only root (sudo) can give a file to another user\n`,
      });
    }
    await chmod(configFile, 0o644);
    const readable = await pkiInit('--owner', `${OWNER.uid}:${OWNER.gid}`);
    expect({ exitCode: readable.exitCode, err: readable.err }).toEqual({ exitCode: 0, err: '' });
  });

  test('needs the HTTPS listener\'s three files named, and a numeric --owner', async () => {
    const noOwner = await pkiInit('--owner', 'node');
    expect({ exitCode: noOwner.exitCode, err: noOwner.err }).toEqual({ exitCode: 2, err: 'tether: pki init: --owner: expected a numeric uid or uid:gid (got "node")\n' });
    await editConfig((raw) => {
      raw.listeners = { https: { host: '0.0.0.0', port: 8443, certFile: 'tls/server.pem', keyFile: 'tls/server.key.pem' } };
    });
    const noCa = await pkiInit();
    expect({ exitCode: noCa.exitCode, err: noCa.err }).toEqual({ exitCode: 2, err: 'tether: pki init: listeners.https: certFile, keyFile and clientCaFile must name where the server reads its certificate, key and client CA\n' });
    expect(existsSync(deployPath('pki'))).toBe(false);
  });
});

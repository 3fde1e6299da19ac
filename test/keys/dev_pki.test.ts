import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier, id_ce_subjectKeyIdentifier, SubjectKeyIdentifier, SubjectPublicKeyInfo, type Name,
} from '@peculiar/asn1-x509';
import { Agent } from 'undici';
import { peerCertificateOf } from '../../src/binding/socket_certificate.js';
import {
  createEphemeralPki,
  ensureDevPki,
  issueClientCertificate,
  type DevPki,
  type Pki,
} from '../../src/keys/dev_pki.js';
import { agentFor, getJson, opensslThumbprint, startTlsServer } from '../binding/tls_fixture.js';

const temporaryDirectories: string[] = [];
function freshDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'tether-dev-pki-'));
  temporaryDirectories.push(directory);
  return directory;
}
afterAll(() => temporaryDirectories.forEach((directory) => rmSync(directory, { recursive: true, force: true })));

/** `openssl verify` of `certificatePem` against `caPem`, with an optional purpose. */
function opensslVerify(caPem: string, certificatePem: string, purpose?: 'sslclient' | 'sslserver'): { ok: boolean; output: string } {
  const directory = freshDirectory();
  writeFileSync(join(directory, 'ca.pem'), caPem);
  writeFileSync(join(directory, 'leaf.pem'), certificatePem);
  const args = ['verify', ...(purpose ? ['-purpose', purpose] : []), '-CAfile', join(directory, 'ca.pem'), join(directory, 'leaf.pem')];
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

function opensslText(certificatePem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: certificatePem, encoding: 'utf8' });
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

describe('ensureDevPki', () => {
  let directory: string;
  let pki: DevPki;

  beforeAll(async () => {
    directory = freshDirectory();
    pki = await ensureDevPki({ directory, clientNames: ['billing', 'orders'] });
  });

  it('creates the CA, the server certificate and one client certificate per name', () => {
    expect(pki.directory).toBe(directory);
    expect(pki.ca.certificatePath).toBe(join(directory, 'ca.pem'));
    expect(pki.ca.privateKeyPath).toBe(join(directory, 'ca.key.pem'));
    expect(pki.server.certificatePath).toBe(join(directory, 'server.pem'));
    expect(pki.server.privateKeyPath).toBe(join(directory, 'server.key.pem'));
    expect(pki.clients.billing!.certificatePath).toBe(join(directory, 'clients', 'billing.pem'));
    expect(pki.clients.billing!.privateKeyPath).toBe(join(directory, 'clients', 'billing.key.pem'));
    expect(Object.keys(pki.clients).sort()).toEqual(['billing', 'orders']);
    expect(pki.created).toHaveLength(8);
    for (const entry of [pki.ca, pki.server, pki.clients.billing!, pki.clients.orders!]) {
      expect(readFileSync(entry.certificatePath, 'utf8')).toBe(entry.certificatePem);
      expect(readFileSync(entry.privateKeyPath, 'utf8')).toBe(entry.privateKeyPem);
      expect(entry.thumbprint).toBe(opensslThumbprint(entry.certificatePem));
    }
  });

  it('writes private keys readable by the owner only', () => {
    for (const entry of [pki.ca, pki.server, pki.clients.billing!, pki.clients.orders!]) {
      expect(modeOf(entry.privateKeyPath)).toBe(0o600);
    }
    expect(modeOf(join(directory, 'clients')) & 0o077).toBe(0);
  });

  it('makes a P-256 CA that may sign certificates', () => {
    const ca = new X509Certificate(pki.ca.certificatePem);
    expect(ca.ca).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(createPrivateKey(pki.ca.privateKeyPem).asymmetricKeyType).toBe('ec');
    const text = opensslText(pki.ca.certificatePem);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(opensslVerify(pki.ca.certificatePem, pki.ca.certificatePem).ok).toBe(true);
  });

  it('makes a server certificate for localhost, 127.0.0.1 and ::1, for serverAuth only', () => {
    const server = new X509Certificate(pki.server.certificatePem);
    expect(server.ca).toBe(false);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkIP('::1')).toBe('::1');
    expect(pki.server.hostnames).toEqual(['localhost', '127.0.0.1', '::1']);
    expect(opensslText(pki.server.certificatePem)).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication\n/);
    expect(opensslVerify(pki.ca.certificatePem, pki.server.certificatePem, 'sslserver')).toMatchObject({ ok: true });
    expect(opensslVerify(pki.ca.certificatePem, pki.server.certificatePem, 'sslclient').ok).toBe(false);
  });

  it('makes client certificates CN=<name>, SAN DNS <name>, for clientAuth only', () => {
    const billing = new X509Certificate(pki.clients.billing!.certificatePem);
    expect(billing.subject).toBe('CN=billing');
    expect(billing.subjectAltName).toBe('DNS:billing');
    expect(billing.ca).toBe(false);
    expect(opensslText(pki.clients.billing!.certificatePem)).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication\n/);
    for (const name of ['billing', 'orders']) {
      expect(opensslVerify(pki.ca.certificatePem, pki.clients[name]!.certificatePem, 'sslclient')).toMatchObject({ ok: true });
      expect(opensslVerify(pki.ca.certificatePem, pki.clients[name]!.certificatePem, 'sslserver').ok).toBe(false);
    }
    expect(billing.checkPrivateKey(createPrivateKey(pki.clients.billing!.privateKeyPem))).toBe(true);
  });

  it('reuses the files on a later call, only reading them', async () => {
    const before = statSync(pki.ca.certificatePath).mtimeMs;
    const again = await ensureDevPki({ directory, clientNames: ['billing', 'orders'] });
    expect(again.created).toEqual([]);
    expect(again.ca.certificatePem).toBe(pki.ca.certificatePem);
    expect(again.server.privateKeyPem).toBe(pki.server.privateKeyPem);
    expect(again.clients.billing!.thumbprint).toBe(pki.clients.billing!.thumbprint);
    expect(statSync(pki.ca.certificatePath).mtimeMs).toBe(before);
  });

  it('creates only the missing client certificate and leaves the rest alone', async () => {
    const more = await ensureDevPki({ directory, clientNames: ['billing', 'inventory'] });
    expect([...more.created].sort()).toEqual([join(directory, 'clients', 'inventory.key.pem'), join(directory, 'clients', 'inventory.pem')]);
    expect(more.ca.certificatePem).toBe(pki.ca.certificatePem);
    expect(more.server.certificatePem).toBe(pki.server.certificatePem);
    expect(more.clients.billing!.certificatePem).toBe(pki.clients.billing!.certificatePem);
    expect(Object.keys(more.clients).sort()).toEqual(['billing', 'inventory']);
    expect(opensslVerify(pki.ca.certificatePem, more.clients.inventory!.certificatePem, 'sslclient').ok).toBe(true);
    // The one not asked for this time is still on disk.
    expect(readFileSync(join(directory, 'clients', 'orders.pem'), 'utf8')).toBe(pki.clients.orders!.certificatePem);
  });

  it('returns a prototype-less map of clients', () => {
    expect(pki.clients.constructor).toBeUndefined();
    expect('toString' in pki.clients).toBe(false);
  });
});

describe('ensureDevPki repairs what is unusable', () => {
  it('reissues a certificate whose key is missing, and nothing else', async () => {
    const directory = freshDirectory();
    const first = await ensureDevPki({ directory, clientNames: ['a', 'b'] });
    unlinkSync(first.server.privateKeyPath);
    const second = await ensureDevPki({ directory, clientNames: ['a', 'b'] });
    expect([...second.created].sort()).toEqual([first.server.privateKeyPath, first.server.certificatePath].sort());
    expect(second.server.certificatePem).not.toBe(first.server.certificatePem);
    expect(second.clients.a!.certificatePem).toBe(first.clients.a!.certificatePem);
  });

  it('reissues a certificate that does not match its key', async () => {
    const directory = freshDirectory();
    const first = await ensureDevPki({ directory, clientNames: ['a', 'b'] });
    writeFileSync(first.clients.a!.privateKeyPath, first.clients.b!.privateKeyPem);
    const second = await ensureDevPki({ directory, clientNames: ['a', 'b'] });
    expect(second.created).toContain(first.clients.a!.certificatePath);
    const a = new X509Certificate(second.clients.a!.certificatePem);
    expect(a.checkPrivateKey(createPrivateKey(second.clients.a!.privateKeyPem))).toBe(true);
  });

  it('reissues an expired client certificate', async () => {
    const directory = freshDirectory();
    const first = await ensureDevPki({ directory, clientNames: ['a'] });
    const expired = await issueClientCertificate(first, 'a', { notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 1000) });
    writeFileSync(first.clients.a!.certificatePath, expired.certificatePem);
    writeFileSync(first.clients.a!.privateKeyPath, expired.privateKeyPem);
    const second = await ensureDevPki({ directory, clientNames: ['a'] });
    expect(second.created).toContain(first.clients.a!.certificatePath);
    expect(new X509Certificate(second.clients.a!.certificatePem).validToDate.getTime()).toBeGreaterThan(Date.now() + 300 * 86_400_000);
  });

  it('reissues the server certificate when asked for other host names', async () => {
    const directory = freshDirectory();
    const first = await ensureDevPki({ directory, clientNames: [] });
    const second = await ensureDevPki({ directory, clientNames: [], serverHostnames: ['tether.test', 'localhost', '10.1.2.3'] });
    expect(second.created).toContain(first.server.certificatePath);
    const server = new X509Certificate(second.server.certificatePem);
    expect(server.checkHost('tether.test')).toBe('tether.test');
    expect(server.checkIP('10.1.2.3')).toBe('10.1.2.3');
    expect(second.ca.certificatePem).toBe(first.ca.certificatePem);
  });

  it('reuses a server certificate for a wildcard host name', async () => {
    const directory = freshDirectory();
    const serverHostnames = ['*.tether.test', 'localhost'];
    const first = await ensureDevPki({ directory, clientNames: [], serverHostnames });
    expect(new X509Certificate(first.server.certificatePem).checkHost('auth.tether.test')).toBe('*.tether.test');
    expect((await ensureDevPki({ directory, clientNames: [], serverHostnames })).created).toEqual([]);
  });

  it('reissues everything under a new CA when the CA is gone', async () => {
    const directory = freshDirectory();
    const first = await ensureDevPki({ directory, clientNames: ['a'] });
    unlinkSync(first.ca.privateKeyPath);
    const second = await ensureDevPki({ directory, clientNames: ['a'] });
    expect(second.ca.certificatePem).not.toBe(first.ca.certificatePem);
    expect(second.created).toHaveLength(6);
    expect(opensslVerify(second.ca.certificatePem, second.server.certificatePem, 'sslserver').ok).toBe(true);
    expect(opensslVerify(second.ca.certificatePem, second.clients.a!.certificatePem, 'sslclient').ok).toBe(true);
  });

  it('agrees on one CA when called concurrently on an empty directory', async () => {
    const directory = freshDirectory();
    const results = await Promise.all([
      ensureDevPki({ directory, clientNames: ['a'] }),
      ensureDevPki({ directory, clientNames: ['a', 'b'] }),
      ensureDevPki({ directory, clientNames: ['c'] }),
    ]);
    const caPem = readFileSync(join(directory, 'ca.pem'), 'utf8');
    for (const result of results) {
      expect(result.ca.certificatePem).toBe(caPem);
      for (const client of Object.values(result.clients)) {
        expect(opensslVerify(caPem, client.certificatePem, 'sslclient').ok).toBe(true);
      }
    }
  });

  it('accepts every client id the configuration allows, with a DNS SAN only for host names', async () => {
    const names = ['orders-worker', 'svc_1~beta', 'a.b.c', 'x'.repeat(64)];
    const pki = await ensureDevPki({ directory: freshDirectory(), clientNames: names });
    for (const name of names) {
      const certificate = new X509Certificate(pki.clients[name]!.certificatePem);
      expect(certificate.subject).toBe(`CN=${name}`);
      expect(opensslVerify(pki.ca.certificatePem, pki.clients[name]!.certificatePem, 'sslclient').ok).toBe(true);
    }
    expect(new X509Certificate(pki.clients['svc_1~beta']!.certificatePem).subjectAltName).toBeUndefined();
    expect(new X509Certificate(pki.clients['a.b.c']!.certificatePem).subjectAltName).toBe('DNS:a.b.c');
    expect((await ensureDevPki({ directory: pki.directory, clientNames: names })).created).toEqual([]);
  });

  it.each([['../escape'], ['a/b'], [''], ['.hidden'], ['..'], ['white space'], ['CN=x,O=y'], ['x'.repeat(65)]])('refuses the client name %j', async (name) => {
    await expect(ensureDevPki({ directory: freshDirectory(), clientNames: [name] })).rejects.toThrow(TypeError);
  });
});

describe('createEphemeralPki', () => {
  it('is valid for openssl', async () => {
    const pki = await createEphemeralPki({ clientNames: ['a', 'b', 'c'] });
    expect(opensslVerify(pki.ca.certificatePem, pki.server.certificatePem, 'sslserver').ok).toBe(true);
    for (const name of ['a', 'b', 'c']) {
      expect(opensslVerify(pki.ca.certificatePem, pki.clients[name]!.certificatePem, 'sslclient').ok).toBe(true);
      expect(pki.clients[name]!.thumbprint).toBe(opensslThumbprint(pki.clients[name]!.certificatePem));
    }
    expect(pki.server.hostnames).toEqual(['localhost', '127.0.0.1', '::1']);
    expect('directory' in pki).toBe(false);
  });

  it('makes a new CA every time', async () => {
    const [one, two] = await Promise.all([createEphemeralPki(), createEphemeralPki()]);
    expect(one.ca.certificatePem).not.toBe(two.ca.certificatePem);
    expect(new X509Certificate(one.ca.certificatePem).subject).not.toBe(new X509Certificate(two.ca.certificatePem).subject);
  });

  it('16 at once: each leaf names its own CA byte for byte, carries its key identifiers, and is signed by that CA alone', async () => {
    const pkis = await Promise.all(Array.from({ length: 16 }, () => createEphemeralPki({ clientNames: ['a', 'b'] })));
    const nameBytes = (name: Name) => Buffer.from(AsnConvert.serialize(name));
    const extensionOf = (der: Buffer, id: string) => AsnConvert.parse(der, Certificate).tbsCertificate.extensions?.find((e) => e.extnID === id);
    pkis.forEach((pki, index) => {
      const caDer = new X509Certificate(pki.ca.certificatePem).raw;
      const ca = AsnConvert.parse(caDer, Certificate).tbsCertificate;
      const caKeyId = Buffer.from(AsnConvert.parse(extensionOf(caDer, id_ce_subjectKeyIdentifier)!.extnValue.buffer, SubjectKeyIdentifier).buffer);
      for (const leafPem of [pki.server.certificatePem, pki.clients.a!.certificatePem, pki.clients.b!.certificatePem]) {
        const leaf = new X509Certificate(leafPem);
        expect(nameBytes(AsnConvert.parse(leaf.raw, Certificate).tbsCertificate.issuer).equals(nameBytes(ca.subject))).toBe(true);
        const authority = AsnConvert.parse(extensionOf(leaf.raw, id_ce_authorityKeyIdentifier)!.extnValue.buffer, AuthorityKeyIdentifier);
        expect(Buffer.from(authority.keyIdentifier!.buffer).equals(caKeyId)).toBe(true);
        const ownKeyId = Buffer.from(AsnConvert.parse(extensionOf(leaf.raw, id_ce_subjectKeyIdentifier)!.extnValue.buffer, SubjectKeyIdentifier).buffer);
        const spki = AsnConvert.parse(leaf.publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo);
        expect(ownKeyId.equals(createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest())).toBe(true);
        expect(leaf.verify(new X509Certificate(pki.ca.certificatePem).publicKey)).toBe(true);
        const other = new X509Certificate(pkis[(index + 1) % pkis.length]!.ca.certificatePem);
        expect(leaf.checkIssued(other)).toBe(false);
        expect(leaf.verify(other.publicKey)).toBe(false);
      }
    });
  });

  it('leaves no Reflect metadata shim behind', async () => {
    await createEphemeralPki();
    expect((Reflect as unknown as Record<string, unknown>).getMetadata).toBeUndefined();
    expect((Reflect as unknown as Record<string, unknown>).getOwnMetadata).toBeUndefined();
  });
});

describe('issueClientCertificate', () => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await createEphemeralPki();
  });

  it('issues a CA-signed client certificate with a JWK of its public key', async () => {
    const issued = await issueClientCertificate(pki, 'extra');
    expect(issued.selfSigned).toBe(false);
    expect(issued.name).toBe('extra');
    expect(opensslVerify(pki.ca.certificatePem, issued.certificatePem, 'sslclient').ok).toBe(true);
    expect(issued.thumbprint).toBe(opensslThumbprint(issued.certificatePem));
    expect(issued.jwk['x5t#S256']).toBe(issued.thumbprint);
  });

  it('issues a self-signed certificate whose JWK carries x5c (self_signed_tls_client_auth)', async () => {
    const issued = await issueClientCertificate(pki, 'solo', { selfSigned: true });
    const certificate = new X509Certificate(issued.certificatePem);
    expect(issued.selfSigned).toBe(true);
    expect(certificate.subject).toBe('CN=solo');
    expect(certificate.issuer).toBe('CN=solo');
    expect(certificate.verify(certificate.publicKey)).toBe(true);
    expect(opensslVerify(pki.ca.certificatePem, issued.certificatePem).ok).toBe(false);
    expect(issued.jwk).toMatchObject({ kty: 'EC', crv: 'P-256', 'x5t#S256': issued.thumbprint });
    expect(issued.jwk).not.toHaveProperty('d');
    expect(issued.jwk.x5c).toEqual([certificate.raw.toString('base64')]);
    const fromJwk = createPublicKey({ key: { ...issued.jwk }, format: 'jwk' });
    expect(fromJwk.equals(certificate.publicKey)).toBe(true);
  });

  it('issues expired certificates for negative tests', async () => {
    const expired = await issueClientCertificate(pki, 'late', { notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const result = opensslVerify(pki.ca.certificatePem, expired.certificatePem);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/expired/);
  });

  it('never lets a certificate outlive its issuer', async () => {
    const shortLived = await issueClientCertificate(pki, 'issuer', { notAfter: new Date(Date.now() + 10 * 86_400_000) });
    const issued = await issueClientCertificate({ ...pki, ca: shortLived }, 'leaf');
    expect(new X509Certificate(issued.certificatePem).validToDate).toEqual(new X509Certificate(shortLived.certificatePem).validToDate);
  });

  it('refuses an unsafe name', async () => {
    await expect(issueClientCertificate(pki, 'CN=evil, O=x')).rejects.toThrow(TypeError);
  });
});

describe('the development PKI over real mTLS', () => {
  it('serves TLS with the server certificate and authorizes CA-issued client certificates only', async () => {
    const pki = await ensureDevPki({ directory: freshDirectory(), clientNames: ['billing'] });
    const selfSigned = await issueClientCertificate(pki, 'solo', { selfSigned: true });
    const server = await startTlsServer(pki, (req) => {
      const certificate = peerCertificateOf(req.socket);
      const socket = req.socket as TLSSocket;
      return { authorized: socket.authorized, thumbprint: certificate?.thumbprint };
    });
    try {
      // undici verifies the server certificate against the CA (and the IP SAN 127.0.0.1).
      const agent = agentFor(pki, pki.clients.billing);
      const issued = await getJson<{ authorized: boolean; thumbprint: string }>(server.origin, agent);
      await agent.close();
      expect(issued.body).toEqual({ authorized: true, thumbprint: pki.clients.billing!.thumbprint });

      const selfAgent = agentFor(pki, selfSigned);
      const self = await getJson<{ authorized: boolean; thumbprint: string }>(server.origin, selfAgent);
      await selfAgent.close();
      expect(self.body).toEqual({ authorized: false, thumbprint: selfSigned.thumbprint });
    } finally {
      await server.close();
    }
  });

  it('is valid for the "localhost" name as well', async () => {
    const pki = await createEphemeralPki({ clientNames: ['billing'] });
    const server = await startTlsServer(pki, (req) => ({ authorized: (req.socket as TLSSocket).authorized }));
    // Connect to 127.0.0.1 but verify the certificate for "localhost" (no resolver involved).
    const agent = new Agent({
      connect: { ca: pki.ca.certificatePem, cert: pki.clients.billing!.certificatePem, key: pki.clients.billing!.privateKeyPem, servername: 'localhost' },
    });
    try {
      const { body } = await getJson(server.origin, agent);
      expect(body).toEqual({ authorized: true });
    } finally {
      await agent.close();
      await server.close();
    }
  });
});

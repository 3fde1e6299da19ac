import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { PresentedCertificate } from '../../src/binding/presented_certificate.js';
import { peerCertificateOf } from '../../src/binding/socket_certificate.js';
import { createEphemeralPki, issueClientCertificate, type Pki } from '../../src/keys/dev_pki.js';
import { agentFor, getJson, opensslThumbprint, startPlainServer, startTlsServer, type TestServer } from './tls_fixture.js';

interface Seen {
  present: boolean;
  thumbprint?: string;
  authorized?: boolean;
  authorizationError?: string;
  subject?: string;
  source?: string;
  pemMatches?: boolean;
  call?: number;
}

describe('peerCertificateOf over real TLS', () => {
  let pki: Pki;
  let server: TestServer;
  const seen: Array<{ certificate: PresentedCertificate | undefined; socket: Socket }> = [];

  function describeCertificate(req: IncomingMessage): Seen {
    const certificate = peerCertificateOf(req.socket);
    seen.push({ certificate, socket: req.socket });
    if (!certificate) return { present: false };
    return {
      present: true,
      thumbprint: certificate.thumbprint,
      authorized: certificate.authorized,
      authorizationError: certificate.authorizationError,
      subject: certificate.subject,
      source: certificate.source,
      pemMatches: certificate.pem === certificate.x509.toString() && certificate.x509.raw.equals(certificate.der),
      call: seen.length,
    };
  }

  beforeAll(async () => {
    pki = await createEphemeralPki({ clientNames: ['alpha'] });
    server = await startTlsServer(pki, describeCertificate);
  });
  afterAll(() => server.close());
  beforeEach(() => {
    seen.length = 0;
  });

  it('returns the CA-issued client certificate, authorized, with the thumbprint openssl computes', async () => {
    const agent = agentFor(pki, pki.clients.alpha);
    try {
      const { body } = await getJson<Seen>(`${server.origin}/`, agent);
      expect(body).toMatchObject({
        present: true,
        source: 'tls',
        authorized: true,
        subject: 'CN=alpha',
        pemMatches: true,
        thumbprint: opensslThumbprint(pki.clients.alpha!.certificatePem),
      });
      expect(body.thumbprint).toBe(pki.clients.alpha!.thumbprint);
      expect(body.authorizationError).toBeUndefined();
    } finally {
      await agent.close();
    }
  });

  it('returns a self-signed certificate as not authorized, with the reason', async () => {
    const selfSigned = await issueClientCertificate(pki, 'solo', { selfSigned: true });
    const agent = agentFor(pki, selfSigned);
    try {
      const { body } = await getJson<Seen>(`${server.origin}/`, agent);
      expect(body).toMatchObject({ present: true, authorized: false, authorizationError: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
      expect(body.thumbprint).toBe(opensslThumbprint(selfSigned.certificatePem));
    } finally {
      await agent.close();
    }
  });

  it('returns a certificate from another CA as not authorized', async () => {
    const other = await createEphemeralPki({ clientNames: ['mallory'] });
    const agent = agentFor(pki, other.clients.mallory);
    try {
      const { body } = await getJson<Seen>(`${server.origin}/`, agent);
      expect(body).toMatchObject({ present: true, authorized: false, thumbprint: other.clients.mallory!.thumbprint });
      expect(body.authorizationError).toEqual(expect.any(String));
    } finally {
      await agent.close();
    }
  });

  it('returns undefined when the client sends no certificate', async () => {
    const agent = agentFor(pki);
    try {
      expect((await getJson<Seen>(`${server.origin}/`, agent)).body).toEqual({ present: false });
      expect((await getJson<Seen>(`${server.origin}/`, agent)).body).toEqual({ present: false });
    } finally {
      await agent.close();
    }
  });

  it('reads the certificate once per connection: the same object on two keep-alive requests', async () => {
    const agent = agentFor(pki, pki.clients.alpha);
    try {
      await getJson(`${server.origin}/one`, agent);
      await getJson(`${server.origin}/two`, agent);
      expect(seen).toHaveLength(2);
      expect(seen[1]!.socket).toBe(seen[0]!.socket);
      expect(seen[1]!.certificate).toBe(seen[0]!.certificate);
      expect(seen[0]!.certificate).toBeDefined();
    } finally {
      await agent.close();
    }
    // A new connection reads its own certificate.
    const second = agentFor(pki, pki.clients.alpha);
    try {
      await getJson(`${server.origin}/three`, second);
      expect(seen[2]!.socket).not.toBe(seen[0]!.socket);
      expect(seen[2]!.certificate).not.toBe(seen[0]!.certificate);
      expect(seen[2]!.certificate!.thumbprint).toBe(seen[0]!.certificate!.thumbprint);
    } finally {
      await second.close();
    }
  });

  it('hands out a read-only object', async () => {
    const agent = agentFor(pki, pki.clients.alpha);
    try {
      await getJson(`${server.origin}/`, agent);
      const certificate = seen[0]!.certificate!;
      expect(Object.isFrozen(certificate)).toBe(true);
      expect(() => {
        (certificate as { thumbprint: string }).thumbprint = 'forged';
      }).toThrow(TypeError);
    } finally {
      await agent.close();
    }
  });
});

describe('peerCertificateOf on a plain socket', () => {
  it('returns undefined', async () => {
    const server = await startPlainServer((req) => ({ present: peerCertificateOf(req.socket) !== undefined }));
    try {
      expect((await getJson(`${server.origin}/`, undefined)).body).toEqual({ present: false });
    } finally {
      await server.close();
    }
  });
});

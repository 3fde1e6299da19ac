import type { IncomingMessage } from 'node:http';
import { X509Certificate } from 'node:crypto';
import { request } from 'undici';
import { callerCertificate, type CallerCertificateOptions } from '../../src/binding/caller_certificate.js';
import { createEphemeralPki, issueClientCertificate, type Pki } from '../../src/keys/dev_pki.js';
import { agentFor, getJson, opensslThumbprint, startPlainServer, startTlsServer, type TestServer } from './tls_fixture.js';

interface Seen {
  present: boolean;
  source?: string;
  thumbprint?: string;
  authorized?: boolean;
}

function inspectWith(options: CallerCertificateOptions) {
  return (req: IncomingMessage): Seen => {
    const certificate = callerCertificate(req, options);
    return certificate
      ? { present: true, source: certificate.source, thumbprint: certificate.thumbprint, authorized: certificate.authorized }
      : { present: false };
  };
}

function clientCertHeader(pem: string): string {
  return `:${new X509Certificate(pem).raw.toString('base64')}:`;
}

const pki: Pki = await createEphemeralPki({ clientNames: ['alpha', 'proxy'] });

describe('callerCertificate on a plain HTTP listener behind a proxy', () => {
  const servers: TestServer[] = [];
  afterAll(() => Promise.all(servers.map((server) => server.close())));

  async function plain(options: CallerCertificateOptions, host = '127.0.0.1'): Promise<TestServer> {
    const server = await startPlainServer(inspectWith(options), host);
    servers.push(server);
    return server;
  }

  it('takes the RFC 9440 header from a trusted proxy (loopback, IPv4)', async () => {
    const server = await plain({ proxy: { trustedProxies: ['127.0.0.0/8'], ca: pki.ca.certificatePem } });
    const { body } = await getJson<Seen>(server.origin, undefined, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toEqual({
      present: true,
      source: 'proxy-header',
      thumbprint: opensslThumbprint(pki.clients.alpha!.certificatePem),
      authorized: true,
    });
  });

  it('takes the nginx escaped PEM from a trusted proxy', async () => {
    const server = await plain({ proxy: { trustedProxies: ['127.0.0.1'], header: 'x-ssl-client-cert' } });
    const { body } = await getJson<Seen>(server.origin, undefined, {
      'x-ssl-client-cert': encodeURIComponent(pki.clients.alpha!.certificatePem),
    });
    expect(body).toMatchObject({ present: true, source: 'proxy-header', thumbprint: pki.clients.alpha!.thumbprint, authorized: false });
  });

  it('ignores the header when the peer is not a trusted proxy', async () => {
    const server = await plain({ proxy: { trustedProxies: ['10.0.0.0/8', 'fd00::/8'] } });
    const { body } = await getJson<Seen>(server.origin, undefined, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toEqual({ present: false });
  });

  it('ignores the header when no proxy is configured', async () => {
    const server = await plain({});
    const { body } = await getJson<Seen>(server.origin, undefined, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toEqual({ present: false });
  });

  it('throws ERR_CLIENT_CERT_HEADER for a malformed header from a trusted proxy', async () => {
    const server = await plain({ proxy: { trustedProxies: ['127.0.0.1'] } });
    const { status, body } = await getJson(server.origin, undefined, { 'client-cert': ':bm90IGEgY2VydGlmaWNhdGU=:' });
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'BindingError', code: 'ERR_CLIENT_CERT_HEADER' });
  });

  // RFC 9440 §4. undici sends each [name, value] pair of a flat list as its own header line.
  it.each([
    ['x-ssl-client-cert', ['X-SSL-Client-Cert', encodeURIComponent(pki.clients.alpha!.certificatePem), 'x-ssl-client-cert', '']],
    ['x-ssl-client-cert', ['x-ssl-client-cert', '', 'X-Ssl-Client-Cert', encodeURIComponent(pki.clients.alpha!.certificatePem)]],
    ['client-cert', ['Client-Cert', clientCertHeader(pki.clients.alpha!.certificatePem), 'client-cert', clientCertHeader(pki.clients.proxy!.certificatePem)]],
  ])('refuses a %s header that occurs twice (any case), even with one empty occurrence', async (header, headers) => {
    const server = await plain({ proxy: { trustedProxies: ['127.0.0.1'], header, ca: pki.ca.certificatePem } });
    const response = await request(server.origin, { headers });
    expect(response.statusCode).toBe(400);
    expect(await response.body.json()).toEqual({ error: 'BindingError', code: 'ERR_CLIENT_CERT_HEADER' });
  });

  it('trusts an IPv4 rule for an IPv4-mapped peer on a dual-stack listener', async () => {
    let server: TestServer;
    try {
      server = await plain({ proxy: { trustedProxies: ['127.0.0.1'] } }, '::');
    } catch {
      return; // no IPv6 on this machine
    }
    // The listener on "::" reports the IPv4 peer as ::ffff:127.0.0.1.
    const origin = server.origin.replace('[::]', '127.0.0.1');
    const { body } = await getJson<Seen>(origin, undefined, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toMatchObject({ present: true, thumbprint: pki.clients.alpha!.thumbprint });
  });

  it('works over IPv6 loopback with an IPv6 rule', async () => {
    let server: TestServer;
    try {
      server = await plain({ proxy: { trustedProxies: ['::1/128'] } }, '::1');
    } catch {
      return; // no IPv6 on this machine
    }
    const { body } = await getJson<Seen>(server.origin, undefined, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toMatchObject({ present: true, thumbprint: pki.clients.alpha!.thumbprint });
  });
});

describe('callerCertificate on the mTLS listener', () => {
  const servers: TestServer[] = [];
  afterAll(() => Promise.all(servers.map((server) => server.close())));

  async function tls(options: CallerCertificateOptions): Promise<TestServer> {
    const server = await startTlsServer(pki, inspectWith(options));
    servers.push(server);
    return server;
  }

  async function call(server: TestServer, client: Parameters<typeof agentFor>[1], headers: Record<string, string> = {}) {
    const agent = agentFor(pki, client);
    try {
      return await getJson<Seen>(server.origin, agent, headers);
    } finally {
      await agent.close();
    }
  }

  it('takes the TLS client certificate', async () => {
    const server = await tls({});
    const { body } = await call(server, pki.clients.alpha);
    expect(body).toEqual({ present: true, source: 'tls', thumbprint: opensslThumbprint(pki.clients.alpha!.certificatePem), authorized: true });
  });

  it('keeps the TLS certificate when an untrusted peer also sends a header', async () => {
    const server = await tls({ proxy: { trustedProxies: ['10.0.0.0/8'] } });
    const selfSigned = await issueClientCertificate(pki, 'forged', { selfSigned: true });
    const { body } = await call(server, pki.clients.alpha, { 'client-cert': clientCertHeader(selfSigned.certificatePem) });
    expect(body).toMatchObject({ source: 'tls', thumbprint: pki.clients.alpha!.thumbprint });
  });

  it('prefers the forwarded certificate over a trusted proxy’s own TLS certificate', async () => {
    const server = await tls({ proxy: { trustedProxies: ['127.0.0.1'], ca: pki.ca.certificatePem } });
    const { body } = await call(server, pki.clients.proxy, { 'client-cert': clientCertHeader(pki.clients.alpha!.certificatePem) });
    expect(body).toEqual({ present: true, source: 'proxy-header', thumbprint: pki.clients.alpha!.thumbprint, authorized: true });
  });

  // RFC 8705 §3: the hop's own certificate identifies the hop. Before issue 12 this fell back to it,
  // and tokens got bound to the proxy's certificate.
  it('has no certificate when a trusted proxy forwards none, whatever the proxy presents itself', async () => {
    const server = await tls({ proxy: { trustedProxies: ['127.0.0.1'], ca: pki.ca.certificatePem } });
    expect((await call(server, pki.clients.proxy)).body).toEqual({ present: false });
    expect((await call(server, pki.clients.proxy, { 'client-cert': '' })).body).toEqual({ present: false });
  });

  it('returns undefined when there is neither a TLS certificate nor a trusted header', async () => {
    const server = await tls({ proxy: { trustedProxies: ['10.0.0.1'] } });
    expect((await call(server, undefined)).body).toEqual({ present: false });
  });
});

// koa, express-shaped and node:http middleware over real HTTP(S): TLS client certificates read from
// the socket, DPoP htu from the configured base URL or the Host header, trusted proxy headers, the
// RFC 9728 metadata document, and the rendered errors.
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import Koa from 'koa';
import { Agent, request } from 'undici';
import {
  createVerifier,
  expressVerifier,
  koaVerifier,
  nodeVerifier,
  toHttpError,
  verifyNodeRequest,
  type AccessTokenClaims,
  type ExpressLikeRequest,
  type Verifier,
} from '../../src/resource_server/index.js';
import { AUDIENCE, jwksOf, makeCertificates, makeDpopKey, makeProof, makeSigningKey, mintAccessToken, type CertificateFiles, type DpopKey, type SigningKey } from './helpers.js';

const ISSUER = 'https://issuer.test';
const PUBLIC_BASE = 'https://api.test';
const METADATA_PATH = '/.well-known/oauth-protected-resource/orders';

let key: SigningKey;
let dpopKey: DpopKey;
let certs: Record<string, CertificateFiles>;
let verifier: Verifier;
let clientA: Agent;
let clientB: Agent;
let anonymous: Agent;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  key = await makeSigningKey('ES256');
  dpopKey = await makeDpopKey('ES256');
  certs = makeCertificates(['server', 'client-a', 'client-b']);
  verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
  const ca = cert('server').cert;
  clientA = new Agent({ connect: { ca, cert: cert('client-a').cert, key: cert('client-a').key } });
  clientB = new Agent({ connect: { ca, cert: cert('client-b').cert, key: cert('client-b').key } });
  anonymous = new Agent({ connect: { ca } });
});

afterAll(async () => {
  for (const close of closers) await close();
  await Promise.all([clientA.close(), clientB.close(), anonymous.close()]);
});

function cert(name: string): CertificateFiles {
  return certs[name] as CertificateFiles;
}

async function listen(listener: RequestListener, tls = true): Promise<string> {
  const server = tls
    ? createHttpsServer({ key: cert('server').key, cert: cert('server').cert, requestCert: true, rejectUnauthorized: false }, listener)
    : createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function mtlsToken(name = 'client-a'): Promise<string> {
  return mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { 'x5t#S256': cert(name).thumbprint } } });
}

function dpopToken(): Promise<string> {
  return mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { jkt: dpopKey.jkt } } });
}

async function call(url: string, dispatcher: Agent, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(url, { dispatcher, headers, method: method as 'GET' });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

function challenges(headers: Record<string, string | string[] | undefined>): string[] {
  const value = headers['www-authenticate'];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

describe('koa', () => {
  let base: string;
  beforeAll(async () => {
    const app = new Koa();
    app.use(koaVerifier({ verifier, publicBaseUrl: PUBLIC_BASE, resourceMetadata: { scopesSupported: ['orders:read', 'orders:write'] } }));
    app.use(async (ctx) => {
      const token = ctx.state.token as AccessTokenClaims;
      ctx.body = { sub: token.sub, path: ctx.path };
    });
    base = await listen(app.callback());
  });

  test('a certificate-bound token with the right client certificate reaches the handler with ctx.state.token', async () => {
    const res = await call(`${base}/orders/42`, clientA, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res).toMatchObject({ status: 200, body: { sub: 'client-a', path: '/orders/42' } });
  });

  test('another client certificate: 401 invalid_token with challenges and resource_metadata', async () => {
    const res = await call(`${base}/orders/42`, clientB, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'invalid_token', error_description: 'client certificate is not the one the token is bound to' });
    expect(challenges(res.headers)).toEqual([
      `Bearer realm="${AUDIENCE}", error="invalid_token", error_description="client certificate is not the one the token is bound to", resource_metadata="${PUBLIC_BASE}${METADATA_PATH}"`,
      `DPoP realm="${AUDIENCE}", algs="ES256 PS256 EdDSA Ed25519", resource_metadata="${PUBLIC_BASE}${METADATA_PATH}"`,
    ]);
  });

  test('no client certificate: 401 ERR_CERTIFICATE_MISSING', async () => {
    const res = await call(`${base}/orders/42`, anonymous, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res.status).toBe(401);
    expect(res.body?.error_description).toMatch(/no client certificate/);
  });

  test('no token: 401 with challenges and no error code', async () => {
    const res = await call(`${base}/orders/42`, clientA);
    expect(res.status).toBe(401);
    expect(challenges(res.headers)[0]).toBe(`Bearer realm="${AUDIENCE}", resource_metadata="${PUBLIC_BASE}${METADATA_PATH}"`);
  });

  test('DPoP: htu is the public base URL plus the path; a replay gets the DPoP challenge', async () => {
    const token = await dpopToken();
    const proof = await makeProof(dpopKey, { htm: 'GET', htu: `${PUBLIC_BASE}/orders/42`, accessToken: token });
    const ok = await call(`${base}/orders/42?verbose=1`, anonymous, { authorization: `DPoP ${token}`, dpop: proof });
    expect(ok.status).toBe(200);
    const replay = await call(`${base}/orders/42`, anonymous, { authorization: `DPoP ${token}`, dpop: proof });
    expect(replay.status).toBe(401);
    expect(challenges(replay.headers)[0]).toMatch(/^DPoP realm="[^"]+", error="invalid_dpop_proof", error_description="DPoP proof was already used", algs="ES256 PS256 EdDSA Ed25519"/);
  });

  test('the metadata document is served (GET and HEAD) without a token', async () => {
    const res = await call(`${base}${METADATA_PATH}`, anonymous);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      resource: AUDIENCE,
      authorization_servers: [ISSUER],
      scopes_supported: ['orders:read', 'orders:write'],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: ['ES256', 'PS256', 'EdDSA', 'Ed25519'],
      tls_client_certificate_bound_access_tokens: true,
      dpop_bound_access_tokens_required: false,
    });
    expect((await call(`${base}${METADATA_PATH}`, anonymous, {}, 'HEAD')).status).toBe(200);
    expect((await call(`${base}${METADATA_PATH}`, anonymous, {}, 'POST')).status).toBe(401);
  });

  test('the client certificate is read once per TLS connection, not per request', async () => {
    const original = TLSSocket.prototype.getPeerCertificate;
    let reads = 0;
    TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, ...args: [boolean?]) {
      // Count the server side only: undici's client socket reads the server certificate too.
      if (Reflect.get(this, 'server') !== undefined) reads++;
      return original.apply(this, args as [true]);
    } as typeof original;
    const agent = new Agent({ connections: 1, connect: { ca: cert('server').cert, cert: cert('client-a').cert, key: cert('client-a').key } });
    try {
      const token = await mtlsToken();
      for (let i = 0; i < 5; i++) expect((await call(`${base}/orders/${i}`, agent, { authorization: `Bearer ${token}` })).status).toBe(200);
      expect(reads).toBe(1);
    } finally {
      TLSSocket.prototype.getPeerCertificate = original;
      await agent.close();
    }
  });

  test('per-route scopes: 403 insufficient_scope with scope="..."', async () => {
    const app = new Koa();
    app.use(koaVerifier({ verifier, publicBaseUrl: PUBLIC_BASE, requiredScopes: ['orders:admin'] }));
    app.use(async (ctx) => {
      ctx.body = 'never';
    });
    const url = await listen(app.callback());
    const res = await call(`${url}/orders`, clientA, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res.status).toBe(403);
    expect(challenges(res.headers)[0]).toContain('error="insufficient_scope"');
    expect(challenges(res.headers)[0]).toContain('scope="orders:admin"');
  });
});

describe('express-shaped (req, res, next)', () => {
  let base: string;
  let nextCalls: number;

  beforeAll(async () => {
    const middleware = expressVerifier({ verifier, publicBaseUrl: PUBLIC_BASE });
    // What express does around a middleware mounted at /api: originalUrl keeps the full URL, url is stripped.
    base = await listen((req: IncomingMessage, res: ServerResponse) => {
      const expressReq = req as ExpressLikeRequest;
      expressReq.originalUrl = req.url;
      if (req.url?.startsWith('/api/')) req.url = req.url.slice(4);
      middleware(expressReq, res, (err?: unknown) => {
        nextCalls++;
        if (err !== undefined) throw err;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ sub: expressReq.token?.sub, url: req.url }));
      });
    });
  });
  beforeEach(() => {
    nextCalls = 0;
  });

  test('sets req.token and calls next()', async () => {
    const res = await call(`${base}/orders/1`, clientA, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res).toMatchObject({ status: 200, body: { sub: 'client-a' } });
    expect(nextCalls).toBe(1);
  });

  test('answers errors itself and does not call next()', async () => {
    const res = await call(`${base}/orders/1`, clientB, { authorization: `Bearer ${await mtlsToken()}` });
    expect(res.status).toBe(401);
    expect(challenges(res.headers)[0]).toContain('error="invalid_token"');
    expect(nextCalls).toBe(0);
  });

  test('a mounted app: DPoP htu uses the original URL', async () => {
    const token = await dpopToken();
    const proof = await makeProof(dpopKey, { htm: 'POST', htu: `${PUBLIC_BASE}/api/orders`, accessToken: token });
    const res = await call(`${base}/api/orders`, anonymous, { authorization: `DPoP ${token}`, dpop: proof }, 'POST');
    expect(res).toMatchObject({ status: 200, body: { sub: 'client-a', url: '/orders' } });
  });

  test('serves the metadata document', async () => {
    expect((await call(`${base}${METADATA_PATH}`, anonymous)).body).toMatchObject({ resource: AUDIENCE });
  });
});

describe('node:http', () => {
  test('nodeVerifier calls the handler with the claims, and answers errors', async () => {
    const base = await listen(
      nodeVerifier({ verifier, publicBaseUrl: PUBLIC_BASE }, (_req, res, token) => {
        res.end(JSON.stringify({ sub: token.sub }));
      }),
    );
    expect(await call(`${base}/orders`, clientA, { authorization: `Bearer ${await mtlsToken()}` })).toMatchObject({ status: 200, body: { sub: 'client-a' } });
    expect((await call(`${base}/orders`, clientA, { authorization: 'Bearer abc.def.ghi' })).status).toBe(401);
    expect((await call(`${base}${METADATA_PATH}`, anonymous)).status).toBe(200);
  });

  test('two Authorization header fields are 400 invalid_request (node:http would keep only the first)', async () => {
    const base = await listen(nodeVerifier({ verifier, publicBaseUrl: PUBLIC_BASE }, (_req, res) => void res.end('{}')));
    const token = await mtlsToken();
    const res = await request(`${base}/orders`, { dispatcher: clientA, headers: ['authorization', `Bearer ${token}`, 'authorization', `Bearer ${token}`] });
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toMatchObject({ error: 'invalid_request' });
  });

  test('a throwing handler gets a 500, the server keeps running', async () => {
    const base = await listen(
      nodeVerifier({ verifier, publicBaseUrl: PUBLIC_BASE }, () => {
        throw new Error('handler bug');
      }),
    );
    const token = await mtlsToken();
    expect((await call(`${base}/orders`, clientA, { authorization: `Bearer ${token}` })).status).toBe(500);
    expect((await call(`${base}/orders`, clientA, { authorization: `Bearer ${token}` })).status).toBe(500);
  });

  test('verifyNodeRequest without a public base URL builds htu from Host and the TLS socket', async () => {
    let url = '';
    const base = await listen((req, res) => {
      verifyNodeRequest(verifier, req).then(
        (token) => res.end(JSON.stringify({ sub: token.sub })),
        (err: unknown) => {
          const response = toHttpError(err);
          res.writeHead(response.status, response.headers as Record<string, string>).end(JSON.stringify(response.body));
        },
      );
    });
    url = `${base}/orders/7`;
    const token = await dpopToken();
    const proof = await makeProof(dpopKey, { htm: 'GET', htu: url, accessToken: token });
    expect(await call(url, anonymous, { authorization: `DPoP ${token}`, dpop: proof })).toMatchObject({ status: 200, body: { sub: 'client-a' } });
    const wrong = await makeProof(dpopKey, { htm: 'GET', htu: url.replace('https:', 'http:'), accessToken: token });
    expect(await call(url, anonymous, { authorization: `DPoP ${token}`, dpop: wrong })).toMatchObject({ status: 401, body: { error: 'invalid_dpop_proof' } });
  });
});

describe('behind a TLS-terminating proxy', () => {
  async function proxiedApp(trustedProxies: string[], header?: 'client-cert' | 'x-ssl-client-cert'): Promise<string> {
    return listen(
      nodeVerifier({ verifier, publicBaseUrl: PUBLIC_BASE, trustedProxies, clientCertificateHeader: header }, (_req, res, token) => {
        res.end(JSON.stringify({ sub: token.sub }));
      }),
      false,
    );
  }

  test('the RFC 9440 Client-Cert header of a trusted proxy is used', async () => {
    const base = await proxiedApp(['127.0.0.1']);
    const plain = new Agent();
    try {
      const headers = { authorization: `Bearer ${await mtlsToken()}`, 'client-cert': `:${cert('client-a').der.toString('base64')}:` };
      expect((await call(`${base}/orders`, plain, headers)).status).toBe(200);
      const other = { ...headers, 'client-cert': `:${cert('client-b').der.toString('base64')}:` };
      expect((await call(`${base}/orders`, plain, other)).status).toBe(401);
      const malformed = await call(`${base}/orders`, plain, { ...headers, 'client-cert': 'not-a-byte-sequence' });
      expect(malformed).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    } finally {
      await plain.close();
    }
  });

  test('nginx X-SSL-Client-Cert (URL-escaped PEM) of a trusted proxy is used', async () => {
    const base = await proxiedApp(['127.0.0.0/8'], 'x-ssl-client-cert');
    const plain = new Agent();
    try {
      const headers = { authorization: `Bearer ${await mtlsToken()}`, 'x-ssl-client-cert': encodeURIComponent(cert('client-a').cert) };
      expect((await call(`${base}/orders`, plain, headers)).status).toBe(200);
    } finally {
      await plain.close();
    }
  });

  // RFC 9440 §4: exactly one occurrence and one certificate. Before issue 12 node:http joined the two
  // X-SSL-Client-Cert lines with ", " and the first PEM block won: the client's copy authenticated.
  test.each([
    ['x-ssl-client-cert', 'the victim’s certificate, then the proxy’s empty value', () => ['X-SSL-Client-Cert', encodeURIComponent(cert('client-a').cert), 'x-ssl-client-cert', '']],
    ['x-ssl-client-cert', 'the victim’s certificate, then the caller’s own', () => ['x-ssl-client-cert', encodeURIComponent(cert('client-a').cert), 'x-ssl-client-cert', encodeURIComponent(cert('client-b').cert)]],
    ['x-ssl-client-cert', 'one value: the certificate and a chain', () => ['x-ssl-client-cert', encodeURIComponent(cert('client-a').cert + cert('server').cert)]],
    ['client-cert', 'the victim’s certificate, then an empty value', () => ['Client-Cert', `:${cert('client-a').der.toString('base64')}:`, 'client-cert', '']],
  ] as const)('%s from a trusted proxy (%s) → 400 invalid_request with a Bearer challenge', async (header, _label, certificateHeaders) => {
    const base = await proxiedApp(['127.0.0.1'], header);
    const plain = new Agent();
    try {
      const res = await request(`${base}/orders`, { dispatcher: plain, headers: ['authorization', `Bearer ${await mtlsToken('client-a')}`, ...certificateHeaders()] });
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toEqual({ error: 'invalid_request', error_description: `${header} header is malformed` });
      expect(challenges(res.headers)[0]).toMatch(/^Bearer .*error="invalid_request", error_description="[^"]*header is malformed"/);
    } finally {
      await plain.close();
    }
  });

  // RFC 8705 §3: the proxy's own TLS certificate is never the client's.
  test('a trusted proxy that connects with a certificate but forwards none → 401 (no client certificate)', async () => {
    const base = await listen(
      nodeVerifier({ verifier, publicBaseUrl: PUBLIC_BASE, trustedProxies: ['127.0.0.1'] }, (_req, res, token) => {
        res.end(JSON.stringify({ sub: token.sub }));
      }),
    );
    for (const headers of [{}, { 'client-cert': '' }] as Record<string, string>[]) {
      const res = await call(`${base}/orders`, clientA, { authorization: `Bearer ${await mtlsToken('client-a')}`, ...headers });
      expect(res).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
      expect(res.body?.error_description).toMatch(/no client certificate/);
    }
  });

  test('from an address that is not a trusted proxy the header is ignored', async () => {
    const base = await proxiedApp(['10.9.9.9']);
    const plain = new Agent();
    try {
      const headers = { authorization: `Bearer ${await mtlsToken()}`, 'client-cert': `:${cert('client-a').der.toString('base64')}:` };
      const res = await call(`${base}/orders`, plain, headers);
      expect(res).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
      expect(res.body?.error_description).toMatch(/no client certificate/);
    } finally {
      await plain.close();
    }
  });
});

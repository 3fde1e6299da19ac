// Test fixtures for the resource-server verifier: real keys (jose), a real loopback issuer
// (node:http), real certificates (openssl).
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';
import { VerifierError, type VerifierErrorCode } from '../../src/resource_server/index.js';

export const ISSUER_PLACEHOLDER = 'https://issuer.test';
export const AUDIENCE = 'https://api.test/orders';

export interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: jose.CryptoKey;
  readonly publicKey: jose.CryptoKey;
  readonly publicJwk: jose.JWK;
}

/** A signing key with its public JWK (kid, alg, use set as an issuer publishes them). */
export async function makeSigningKey(alg = 'ES256', kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

export function jwksOf(...keys: SigningKey[]): { keys: jose.JWK[] } {
  return { keys: keys.map((k) => k.publicJwk) };
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export interface MintOptions {
  readonly issuer: string;
  readonly audience?: unknown;
  readonly header?: Record<string, unknown>;
  readonly claims?: Record<string, unknown>;
  /** Claims to delete from the defaults. */
  readonly omit?: readonly string[];
}

/** An RFC 9068 access token as Tether mints it; `header`/`claims` override, `omit` removes. */
export async function mintAccessToken(key: SigningKey, options: MintOptions): Promise<string> {
  const now = nowSeconds();
  const claims: Record<string, unknown> = {
    iss: options.issuer,
    aud: options.audience ?? AUDIENCE,
    sub: 'client-a',
    client_id: 'client-a',
    jti: randomUUID(),
    iat: now,
    exp: now + 300,
    scope: 'orders:read orders:write',
    ...options.claims,
  };
  for (const name of options.omit ?? []) delete claims[name];
  const header = { alg: key.alg, typ: 'at+jwt', kid: key.kid, ...options.header } as jose.CompactJWSHeaderParameters;
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(header).sign(key.privateKey);
}

/** A compact JWS with an arbitrary header and payload signed with raw HMAC-SHA256 (for alg confusion). */
export function hmacJws(header: object, payload: object, secret: Uint8Array): string {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
  // node:crypto directly: jose refuses to use an asymmetric public key's bytes as an HMAC secret.
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** An unsigned JWS (`alg` as given, empty signature). */
export function unsignedJws(header: object, payload: object): string {
  return `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}.`;
}

export function b64(value: string | Uint8Array): string {
  return Buffer.from(value).toString('base64url');
}

export function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export interface DpopKey {
  readonly alg: string;
  readonly privateKey: jose.CryptoKey;
  readonly publicJwk: jose.JWK;
  readonly jkt: string;
}

export async function makeDpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  const publicJwk = await jose.exportJWK(publicKey);
  return { alg, privateKey, publicJwk, jkt: await jose.calculateJwkThumbprint(publicJwk, 'sha256') };
}

export function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export interface ProofOptions {
  readonly htm: string;
  readonly htu: string;
  readonly accessToken?: string;
  readonly header?: Record<string, unknown>;
  readonly claims?: Record<string, unknown>;
  readonly omit?: readonly string[];
  readonly signWith?: jose.CryptoKey;
}

/** A DPoP proof (RFC 9449 §4.2). */
export async function makeProof(key: DpopKey, options: ProofOptions): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: randomUUID(),
    htm: options.htm,
    htu: options.htu,
    iat: nowSeconds(),
    ...(options.accessToken === undefined ? {} : { ath: ath(options.accessToken) }),
    ...options.claims,
  };
  for (const name of options.omit ?? []) delete claims[name];
  const header = { alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...options.header } as jose.CompactJWSHeaderParameters;
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(header).sign(options.signWith ?? key.privateKey);
}

/** A loopback HTTP server with per-path hit counts and replaceable route handlers. */
export interface TestServer {
  readonly url: string;
  readonly hits: Map<string, number>;
  route(path: string, handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): void;
  close(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const routes = new Map<string, (req: IncomingMessage, res: ServerResponse, body: string) => void>();
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const handler = routes.get(path);
      if (handler === undefined) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      handler(req, res, Buffer.concat(chunks).toString('utf8'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    route(path, handler) {
      routes.set(path, handler);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function json(res: ServerResponse, value: unknown, status = 200): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(value));
}

/** A loopback issuer serving RFC 8414 metadata and a JWKS. */
export interface TestIssuer extends TestServer {
  readonly issuer: string;
  jwks: { keys: jose.JWK[] };
}

export async function startIssuer(initialJwks: { keys: jose.JWK[] }): Promise<TestIssuer> {
  const server = await startTestServer();
  const issuer: TestIssuer = Object.assign(server, { issuer: server.url, jwks: initialJwks });
  server.route('/.well-known/oauth-authorization-server', (_req, res) =>
    json(res, { issuer: server.url, jwks_uri: `${server.url}/jwks`, introspection_endpoint: `${server.url}/introspect` }),
  );
  server.route('/jwks', (_req, res) => json(res, issuer.jwks));
  return issuer;
}

export interface CertificateFiles {
  readonly key: string;
  readonly cert: string;
  readonly der: Buffer;
  readonly thumbprint: string;
}

/** Self-signed P-256 certificates made with openssl: a server certificate for 127.0.0.1 and clients. */
export function makeCertificates(names: readonly string[]): Record<string, CertificateFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-rs-'));
  try {
    const result: Record<string, CertificateFiles> = {};
    for (const name of names) {
      const keyPath = join(dir, `${name}.key`);
      const certPath = join(dir, `${name}.crt`);
      execFileSync(
        'openssl',
        [
          'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
          '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', `/CN=${name}`,
          '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        ],
        { stdio: 'ignore' },
      );
      const cert = readFileSync(certPath, 'utf8');
      const der = Buffer.from(new X509Certificate(cert).raw);
      result[name] = { key: readFileSync(keyPath, 'utf8'), cert, der, thumbprint: createHash('sha256').update(der).digest('base64url') };
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Signs any header and payload with WebCrypto directly, bypassing jose's own header checks (jose
 * refuses to produce e.g. unknown `crit`). ES256 and EdDSA keys only.
 */
export async function rawSign(key: { alg: string; privateKey: jose.CryptoKey }, header: object, payload: object | string): Promise<string> {
  const input = `${b64(JSON.stringify(header))}.${b64(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
  const params = key.alg === 'ES256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' };
  const signature = await crypto.subtle.sign(params, key.privateKey, new TextEncoder().encode(input));
  return `${input}.${b64(new Uint8Array(signature))}`;
}

/** Awaits a rejection and returns it, failing the test when the promise resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (err: unknown) => err,
  );
}


/** Expects a rejection with a VerifierError of this code and returns it. */
export async function expectCode(promise: Promise<unknown>, code: VerifierErrorCode): Promise<VerifierError> {
  const err = await rejection(promise);
  if (!(err instanceof VerifierError)) throw new Error(`expected a VerifierError ${code}, got ${String(err)}`);
  if (err.code !== code) throw new Error(`expected ${code}, got ${err.code} (${err.message})`);
  return err;
}

/** A request carrying `token` with the given scheme. */
export function bearerRequest(token: string, extra: Record<string, unknown> = {}, scheme = 'Bearer') {
  return { method: 'GET', url: AUDIENCE, headers: { authorization: `${scheme} ${token}` }, ...extra };
}

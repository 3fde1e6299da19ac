import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createEphemeralPki } from '../../../src/keys/dev_pki.js';

/**
 * A service-account token issuer shaped like the Kubernetes API server (ServiceAccount issuer
 * discovery, KEP-1393): `GET /.well-known/openid-configuration` and `GET /openid/v1/jwks` over
 * TLS with its own cluster CA, RS256 keys with a `kid`, and projected tokens with the claims an
 * API server writes (`iss`, `sub` system:serviceaccount:<ns>:<name>, `aud` array, `exp`, `iat`,
 * `nbf`, `jti`, `kubernetes.io` { namespace, serviceaccount, pod, node }).
 *
 * Faults on demand: `mode` down (connections reset), garbage (200 with a non-JSON body), error (500),
 * impostor (a discovery document naming another issuer, with a JWKS URL of its own), huge (a 1 MiB
 * JSON document, streamed without a length).
 */

export type IssuerMode = 'ok' | 'down' | 'garbage' | 'error' | 'impostor' | 'huge';

export interface KubernetesIssuer {
  issuer: string;
  /** PEM file of the cluster CA (for `caFile`). */
  caFile: string;
  /** The discovery document's and the JWKS's request counts. */
  requests: { discovery: number; jwks: number };
  mode: IssuerMode;
  /** A service-account token for `namespace`/`name`, signed with the current key; overrides win. */
  serviceAccountToken(options: ServiceAccountTokenOptions): Promise<string>;
  /** Signs arbitrary header + claims with the current key (for hostile tokens). */
  sign(header: Record<string, unknown>, claims: Record<string, unknown>): Promise<string>;
  /** A new current key; the old one stays published unless `retire`. */
  rotate(options?: { retire?: boolean }): Promise<void>;
  /** The current key's public JWK (what an attacker has). */
  publicJwk(): JWK;
  close(): Promise<void>;
}

export interface ServiceAccountTokenOptions {
  namespace: string;
  name: string;
  audience: string | string[];
  /** Seconds from now; default 3600 (the projected-volume default). */
  expiresIn?: number;
  /** Seconds since the epoch; default now. */
  issuedAt?: number;
  /** Leave out `jti` (API servers before 1.29 wrote none). */
  withoutJti?: boolean;
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
}

interface SigningKey { kid: string; privateKey: CryptoKey; publicJwk: JWK }

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export async function startKubernetesIssuer(): Promise<KubernetesIssuer> {
  const pki = await createEphemeralPki();
  const directory = await mkdtemp(join(tmpdir(), 'tether-k8s-issuer-'));
  const caFile = join(directory, 'cluster-ca.pem');
  await writeFile(caFile, pki.ca.certificatePem);
  let keys: SigningKey[] = [await newKey()];
  const requests = { discovery: 0, jwks: 0 };
  let issuer = '';

  const state = { mode: 'ok' as IssuerMode };
  const server: Server = createServer({ cert: pki.server.certificatePem, key: pki.server.privateKeyPem }, (req, res) => {
    const path = req.url ?? '';
    if (path === '/.well-known/openid-configuration') requests.discovery += 1;
    else if (path === '/openid/v1/jwks') requests.jwks += 1;
    else {
      res.writeHead(404).end();
      return;
    }
    if (state.mode === 'down') {
      req.socket.destroy();
      return;
    }
    if (state.mode === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
      return;
    }
    if (state.mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json');
      return;
    }
    if (state.mode === 'huge') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`{"issuer":${JSON.stringify(issuer)},"padding":"`);
      for (let chunk = 0; chunk < 64; chunk += 1) res.write('x'.repeat(16 * 1024));
      res.end('"}');
      return;
    }
    if (state.mode === 'impostor' && path === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: 'https://impostor.example', jwks_uri: 'https://impostor.example/jwks' }));
      return;
    }
    const body = path === '/openid/v1/jwks'
      ? { keys: keys.map((key) => key.publicJwk) }
      // What an API server serves (pkg/serviceaccount/openidmetadata.go).
      : {
        issuer,
        jwks_uri: `${issuer}/openid/v1/jwks`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  issuer = `https://127.0.0.1:${port}`;

  const sign = (header: Record<string, unknown>, claims: Record<string, unknown>) => {
    const key = keys[keys.length - 1]!;
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid, ...header } as never).sign(key.privateKey);
  };

  return {
    issuer,
    caFile,
    requests,
    get mode() {
      return state.mode;
    },
    set mode(mode: IssuerMode) {
      state.mode = mode;
    },
    sign,
    async serviceAccountToken(options) {
      const now = options.issuedAt ?? Math.floor(Date.now() / 1000);
      const claims = {
        aud: Array.isArray(options.audience) ? options.audience : [options.audience],
        exp: now + (options.expiresIn ?? 3600),
        iat: now,
        iss: issuer,
        ...(options.withoutJti ? {} : { jti: randomUUID() }),
        'kubernetes.io': {
          namespace: options.namespace,
          node: { name: 'node-1', uid: randomUUID() },
          pod: { name: `${options.name}-7d9f8b6c5-x2x9q`, uid: randomUUID() },
          serviceaccount: { name: options.name, uid: randomUUID() },
        },
        nbf: now,
        sub: `system:serviceaccount:${options.namespace}:${options.name}`,
        ...options.claims,
      };
      return sign(options.header ?? {}, claims);
    },
    async rotate(options = {}) {
      const next = await newKey();
      keys = options.retire ? [next] : [...keys, next];
    },
    publicJwk: () => keys[keys.length - 1]!.publicJwk,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

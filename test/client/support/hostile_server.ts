/**
 * A hostile or broken authorization server for the client's tests: real HTTPS on a loopback port,
 * discovery, and a token endpoint whose every answer the test scripts — garbage, 500s, tokens for
 * another audience or with wider scopes, expired ones, endless nonce demands, huge or stalled bodies.
 * Tokens it makes are JWTs signed with its own key, bound to the DPoP key of the request's proof.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, decodeProtectedHeader, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';

/** A request as the token endpoint received it. */
export interface TokenRequest {
  readonly form: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  /** RFC 7638 thumbprint of the DPoP proof's key, if a proof came. */
  readonly jkt: string | undefined;
  readonly proof: Record<string, unknown> | undefined;
}

/** What to answer; `body` objects are sent as JSON, strings as they are. */
export interface ScriptedAnswer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: Record<string, unknown> | string;
  /** Never answer (the connection stays open until the server closes). */
  readonly stall?: boolean;
  /** Stream this many bytes of `x`, chunked, with no content-length. */
  readonly streamBytes?: number;
}

export type TokenScript = (request: TokenRequest, server: HostileServer) => ScriptedAnswer | Promise<ScriptedAnswer>;

/** A running hostile server. */
export interface HostileServer {
  readonly issuer: string;
  readonly tokenEndpoint: string;
  /** Every token request, in order. */
  readonly requests: TokenRequest[];
  /** Replaces the token endpoint's behaviour. */
  script(next: TokenScript): void;
  /** A JWT access token signed by this server: `aud`, `scope`, `exp` and `cnf` as given (defaults fit `request`). */
  jwt(request: TokenRequest, claims?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

/** Options of {@link startHostileServer}. */
export interface HostileServerOptions {
  readonly tls: { readonly certificatePem: string; readonly privateKeyPem: string };
  /** Which well-known documents are served (default: RFC 8414's). */
  readonly discovery?: 'oauth-authorization-server' | 'openid-configuration';
}

/** Starts the server; until {@link HostileServer.script} is called, it issues correct DPoP-bound tokens. */
export async function startHostileServer(options: HostileServerOptions): Promise<HostileServer> {
  const { privateKey } = await generateKeyPair('ES256');
  const requests: TokenRequest[] = [];
  let script: TokenScript = async (request, self) => ({
    body: { access_token: await self.jwt(request), token_type: 'DPoP', expires_in: 300, scope: request.form.get('scope') ?? undefined },
  });
  const stalled = new Set<ServerResponse>();

  const server = https.createServer({ cert: options.tls.certificatePem, key: options.tls.privateKeyPem }, (req, res) => {
    void handle(req, res).catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `https://localhost:${(server.address() as AddressInfo).port}`;
  const tokenEndpoint = `${issuer}/token`;

  const self: HostileServer = {
    issuer,
    tokenEndpoint,
    requests,
    script(next) {
      script = next;
    },
    async jwt(request, claims = {}) {
      const now = Math.floor(Date.now() / 1000);
      const payload: Record<string, unknown> = {
        iss: issuer, aud: request.form.get('resource'), scope: request.form.get('scope') ?? undefined, client_id: 'svc',
        iat: now, exp: now + 300, cnf: request.jkt ? { jkt: request.jkt } : undefined, ...claims,
      };
      return new SignJWT(Object.fromEntries(Object.entries(payload).filter(([, value]) => value !== undefined)))
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' }).sign(privateKey as CryptoKey);
    },
    close: () => new Promise<void>((resolve) => {
      for (const res of stalled) res.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', issuer).pathname;
    const discovery = options.discovery ?? 'oauth-authorization-server';
    if (req.method === 'GET' && path === `/.well-known/${discovery}`) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        issuer, token_endpoint: tokenEndpoint, token_endpoint_auth_methods_supported: ['client_secret_basic'],
      }));
      return;
    }
    if (req.method !== 'POST' || path !== '/token') {
      res.writeHead(404).end();
      return;
    }
    let text = '';
    for await (const chunk of req) text += String(chunk);
    const proofJwt = typeof req.headers.dpop === 'string' ? req.headers.dpop : undefined;
    const proofKey = proofJwt ? (decodeProtectedHeader(proofJwt).jwk as JWK | undefined) : undefined;
    const request: TokenRequest = {
      form: new URLSearchParams(text),
      headers: req.headers,
      jkt: proofKey ? await calculateJwkThumbprint(proofKey) : undefined,
      proof: proofJwt ? JSON.parse(Buffer.from(proofJwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown> : undefined,
    };
    requests.push(request);
    const answer = await script(request, self);
    if (answer.stall) {
      stalled.add(res);
      return;
    }
    if (answer.streamBytes !== undefined) {
      res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers });
      const chunk = 'x'.repeat(16 * 1024);
      for (let sent = 0; sent < answer.streamBytes && !res.destroyed; sent += chunk.length) {
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
      }
      res.end();
      return;
    }
    const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
    res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...answer.headers }).end(body);
  }

  return self;
}

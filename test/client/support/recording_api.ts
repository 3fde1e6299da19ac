/**
 * A real API for the client's tests: HTTPS asking for client certificates, Tether's verifier for one
 * audience in front, and a record of every request it received (the token, its decoded claims, the
 * DPoP proof, the answer) — so that a test can say which token reached which API.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import Koa from 'koa';
import { Agent, fetch as undiciFetch } from 'undici';
import { koaVerifier, type DpopNonceSource, type RevocationOptions } from '../../../src/resource_server/index.js';

/** One request as the API saw it. */
export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly scheme: string | undefined;
  readonly token: string | undefined;
  /** Decoded (unverified) claims of a JWT token. */
  readonly claims: Record<string, unknown> | undefined;
  readonly proof: Record<string, unknown> | undefined;
  status: number;
  wwwAuthenticate: string | undefined;
}

/** Options of {@link startRecordingApi}. */
export interface RecordingApiOptions {
  readonly issuer: string;
  readonly audience: string;
  readonly jwks?: { keys: Record<string, unknown>[] };
  readonly tls: { readonly certificatePem: string; readonly privateKeyPem: string };
  readonly requiredScopes?: readonly string[];
  readonly revocation?: RevocationOptions;
  readonly nonce?: DpopNonceSource;
  readonly allowBearer?: boolean;
  /** The CA of the issuer's TLS certificate, for metadata and introspection. */
  readonly issuerCa: string;
}

/** A running API. */
export interface RecordingApi {
  /** e.g. `https://localhost:50123` */
  readonly origin: string;
  readonly received: ReceivedRequest[];
  close(): Promise<void>;
}

/** Starts the API on a loopback port; every path answers `{ ok: true, path }` to a valid token. */
export async function startRecordingApi(options: RecordingApiOptions): Promise<RecordingApi> {
  const received: ReceivedRequest[] = [];
  const issuerAgent = new Agent({ connect: { ca: options.issuerCa } });
  // A dispatcher given per call (introspection presents the API's certificate) wins over this one.
  const issuerFetch = ((input: string, init?: object) => undiciFetch(input, { dispatcher: issuerAgent, ...init })) as never;
  const app = new Koa();
  app.use(async (ctx, next) => {
    const authorization = ctx.get('authorization');
    const [scheme, token] = authorization === '' ? [undefined, undefined] : authorization.split(' ', 2);
    const record: ReceivedRequest = {
      method: ctx.method, path: ctx.path, scheme, token, claims: decoded(token), proof: decoded(ctx.get('dpop') || undefined), status: 0, wwwAuthenticate: undefined,
    };
    received.push(record);
    await next();
    record.status = ctx.status;
    record.wwwAuthenticate = ctx.response.get('www-authenticate') || undefined;
  });
  app.use(koaVerifier({
    issuer: options.issuer,
    audience: options.audience,
    jwks: options.jwks as never,
    requiredScopes: options.requiredScopes,
    allowBearer: options.allowBearer,
    fetch: issuerFetch,
    ...(options.revocation ? { revocation: options.revocation } : {}),
    ...(options.nonce ? { dpop: { nonce: options.nonce } } : {}),
  }));
  app.use((ctx) => {
    ctx.body = { ok: true, path: ctx.path };
  });
  const server = https.createServer({
    cert: options.tls.certificatePem, key: options.tls.privateKeyPem, requestCert: true, rejectUnauthorized: false,
  }, app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `https://localhost:${(server.address() as AddressInfo).port}`,
    received,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await issuerAgent.close();
    },
  };
}

function decoded(jwt: string | undefined): Record<string, unknown> | undefined {
  if (jwt === undefined) return undefined;
  try {
    return decodeJwt(jwt);
  } catch {
    return undefined;
  }
}

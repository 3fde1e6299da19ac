/**
 * Plain `node:http` / `node:https` integration.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHttpAdapter, type HttpAdapter, type HttpOptions, type MiddlewareOptions } from './http_adapter.js';
import type { HttpErrorResponse } from './http_error.js';
import type { AccessTokenClaims } from './verify_access_token.js';
import type { Verifier } from './verifier.js';

/** One shared default, so that calls without options reuse one adapter. */
const NO_OPTIONS: HttpOptions = Object.freeze({});

/**
 * Verifies the access token of a `node:http` request: the client certificate is read from the TLS
 * socket (once per socket) or a trusted proxy header, the URL from `options.publicBaseUrl` or the
 * Host header. Resolves the claims or rejects with a `VerifierError`; render it with `toHttpError`.
 * Invalid `options` reject with a `TypeError`. Pass the same `options` object on every call: the
 * per-options setup is cached by object identity.
 */
export async function verifyNodeRequest(verifier: Verifier, req: IncomingMessage, options: HttpOptions = NO_OPTIONS): Promise<AccessTokenClaims> {
  return adapterFor(verifier, options).verify(req);
}

/** Adapters of {@link verifyNodeRequest}, so that repeated calls do not rebuild them. */
const adapters = new WeakMap<Verifier, WeakMap<HttpOptions, HttpAdapter>>();

function adapterFor(verifier: Verifier, options: HttpOptions): HttpAdapter {
  let byOptions = adapters.get(verifier);
  if (byOptions === undefined) {
    byOptions = new WeakMap();
    adapters.set(verifier, byOptions);
  }
  let adapter = byOptions.get(options);
  if (adapter === undefined) {
    adapter = createHttpAdapter({ ...options, verifier });
    byOptions.set(options, adapter);
  }
  return adapter;
}

/** The handler called for a request whose token is valid. */
export type NodeTokenHandler = (req: IncomingMessage, res: ServerResponse, token: AccessTokenClaims) => void | Promise<void>;

/**
 * Wraps a request handler: serves the RFC 9728 metadata document, answers invalid tokens with the
 * RFC 6750 / RFC 9449 error response, and calls `handler` with the claims otherwise. A handler
 * that throws or rejects gets a bare 500 (when nothing was sent yet).
 */
export function nodeVerifier(options: MiddlewareOptions, handler: NodeTokenHandler): (req: IncomingMessage, res: ServerResponse) => void {
  const adapter = createHttpAdapter(options);
  return (req, res) => {
    // Nothing may escape as an unhandled rejection: a response that cannot be written is dropped.
    handleNodeRequest(adapter, handler, req, res).catch(() => res.destroy());
  };
}

async function handleNodeRequest(adapter: HttpAdapter, handler: NodeTokenHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (adapter.isMetadataRequest(req.method, pathOf(req.url))) {
    sendMetadata(res, adapter, req.method === 'HEAD');
    return;
  }
  let token: AccessTokenClaims;
  try {
    token = await adapter.verify(req);
  } catch (err) {
    sendError(res, adapter.render(err));
    return;
  }
  try {
    await handler(req, res, token);
  } catch {
    if (!res.headersSent) {
      res.statusCode = 500;
      res.end();
    } else res.destroy();
  }
}

/** The path of a request target, without query. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** Writes a rendered error to a `ServerResponse` (also used by the express middleware). */
export function sendError(res: ServerResponse, response: HttpErrorResponse): void {
  res.statusCode = response.status;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value as string | string[]);
  res.end(JSON.stringify(response.body));
}

/** Writes the metadata document (also used by the express middleware). */
export function sendMetadata(res: ServerResponse, adapter: HttpAdapter, headOnly: boolean): void {
  const body = adapter.metadataJson ?? '{}';
  res.statusCode = 200;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'public, max-age=300');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(headOnly ? undefined : body);
}

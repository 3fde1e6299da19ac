/**
 * Express (4 and 5) integration, typed structurally so that this package does not depend on
 * express: any `(req, res, next)` framework built on `node:http` fits.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHttpAdapter, type MiddlewareOptions } from './http_adapter.js';
import { pathOf, sendError, sendMetadata } from './middleware_node.js';
import type { AccessTokenClaims } from './verify_access_token.js';

/** The parts of an express request the middleware uses; `token` is set on success. */
export interface ExpressLikeRequest extends IncomingMessage {
  /** Express keeps the un-mounted URL here. */
  originalUrl?: string;
  /** The validated claims, set by {@link expressVerifier}. */
  token?: AccessTokenClaims;
}

/** An express `next` function. */
export type ExpressLikeNext = (err?: unknown) => void;

/** An express-style middleware. */
export type ExpressLikeMiddleware = (req: ExpressLikeRequest, res: ServerResponse, next: ExpressLikeNext) => void;

/**
 * Express middleware: serves the RFC 9728 metadata document, sets `req.token` to the validated
 * claims and calls `next()`, or answers the RFC 6750 / RFC 9449 error itself (client errors are not
 * passed to the error handler, so they are not logged as server failures).
 */
export function expressVerifier(options: MiddlewareOptions): ExpressLikeMiddleware {
  const adapter = createHttpAdapter(options);
  return (req, res, next) => {
    const url = req.originalUrl ?? req.url;
    if (adapter.isMetadataRequest(req.method, pathOf(url))) {
      sendMetadata(res, adapter, req.method === 'HEAD');
      return;
    }
    adapter
      .verify(req, url)
      .then(
        (token) => {
          req.token = token;
          next();
        },
        (err: unknown) => sendError(res, adapter.render(err)),
      )
      // What express does with a handler that throws: hand the error to the error middleware.
      .catch(next);
  };
}

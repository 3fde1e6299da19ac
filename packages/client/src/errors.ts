/**
 * Typed errors of the client.
 *
 * Every failure the client reports is a {@link ClientError} with a stable `code` (in the style of
 * jose's `ERR_JWT_*` codes) to branch on and log. Messages name the rule that failed and never carry
 * a token, a secret or a private key. A refusal by the token endpoint is a {@link TokenEndpointError}
 * with the RFC 6749 §5.2 error code the server sent.
 *
 * @module
 */

/** The stable codes; add new ones, never rename. */
export const CLIENT_ERROR_CODES = [
  /** The issuer's metadata could not be read, or does not describe this issuer (RFC 8414 §3.3). */
  'ERR_DISCOVERY_FAILED',
  /** The token endpoint could not be reached, or did not answer in time. */
  'ERR_TOKEN_ENDPOINT_UNREACHABLE',
  /** The token endpoint refused with an OAuth error (a {@link TokenEndpointError}). */
  'ERR_TOKEN_ENDPOINT_REFUSED',
  /** The token endpoint answered something that is not a usable RFC 6749 §5.1 token response. */
  'ERR_TOKEN_RESPONSE_INVALID',
  /** The token is for another audience than the resource asked for (RFC 8707 §2). */
  'ERR_TOKEN_AUDIENCE',
  /** The token carries a scope that was not asked for (RFC 6749 §3.3). */
  'ERR_TOKEN_SCOPE',
  /** The token is already expired when it arrives. */
  'ERR_TOKEN_EXPIRED',
  /** The token is not bound the way this client binds its tokens (RFC 8705 §3, RFC 9449 §6). */
  'ERR_TOKEN_BINDING',
  /** The token to exchange is expired (or expires before it could be used). */
  'ERR_SUBJECT_TOKEN_EXPIRED',
  /** A request was about to carry a token to a URL outside the API it is for. */
  'ERR_URL_OUTSIDE_API',
] as const;

/** A stable error code; see {@link CLIENT_ERROR_CODES}. */
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** What the client rejects with. `code` is stable; `message` is safe to log. */
export class ClientError extends Error {
  readonly code: ClientErrorCode;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClientError';
    this.code = code;
  }
}

/** The token endpoint refused (RFC 6749 §5.2): its HTTP status and OAuth error. */
export class TokenEndpointError extends ClientError {
  /** HTTP status of the answer, e.g. 400. */
  readonly status: number;
  /** The RFC 6749 §5.2 `error`, e.g. `invalid_scope`. */
  readonly error: string;
  /** The server's `error_description`, if any. */
  readonly errorDescription: string | undefined;

  constructor(status: number, error: string, errorDescription: string | undefined) {
    super('ERR_TOKEN_ENDPOINT_REFUSED', `the token endpoint answered ${status} ${error}${errorDescription ? `: ${errorDescription}` : ''}`);
    this.name = 'TokenEndpointError';
    this.status = status;
    this.error = error;
    this.errorDescription = errorDescription;
  }
}

/** Narrows `error` to a {@link ClientError}, optionally of one code. */
export function isClientError(error: unknown, code?: ClientErrorCode): error is ClientError {
  return error instanceof ClientError && (code === undefined || error.code === code);
}

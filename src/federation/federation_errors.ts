import { errors } from 'oidc-provider';

/** The external identity a token was issued for (recorded in the ledger, shown by `tether tokens show`). */
export type { ExternalIdentity } from '../ledger/events.js';

type OAuthError = InstanceType<typeof errors.OIDCProviderError> & { error_detail?: string };

/**
 * RFC 6749 §5.2 has no 5xx; `temporarily_unavailable` with 503 as for a database outage (the HTTP
 * layer adds Retry-After). A trusted issuer whose keys cannot be fetched proves nothing either way:
 * the request is neither accepted nor refused for good.
 */
export function issuerUnavailable(cause: Error): OAuthError {
  return serviceUnavailable('a trusted issuer\'s keys cannot be obtained right now; retry later', cause.message);
}

/** The shared database could not record the single use of an assertion. */
export function databaseUnavailable(cause: unknown): OAuthError {
  return serviceUnavailable('the server cannot record tokens right now; retry later', `database unavailable: ${(cause as Error)?.message ?? String(cause)}`);
}

function serviceUnavailable(description: string, detail: string): OAuthError {
  const error = new errors.TemporarilyUnavailable(description) as OAuthError;
  error.error_detail = detail;
  error.status = 503;
  error.statusCode = 503;
  return error;
}

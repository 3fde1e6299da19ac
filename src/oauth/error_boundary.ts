import { errors } from 'oidc-provider';
import { DatabaseFailure, Refusal } from './refusal.js';

/**
 * The one place where Tether's refusals (oauth/refusal.ts) become the oidc-provider errors a client
 * is sent. The private reason travels as `error_detail` and the original error as `cause` (both
 * through oidc-provider's constructors), so the ledger records the reason, logs keep the cause's
 * stack, and oidc-provider never renders either.
 */

export type OAuthError = InstanceType<typeof errors.OIDCProviderError> & { error_description?: string; error_detail?: string };

/** The oidc-provider error for a refusal. */
export function oauthErrorOf(refusal: Refusal): OAuthError {
  const { description: text } = refusal;
  const options = { detail: refusal.reason, cause: refusal.cause };
  switch (refusal.error) {
    case 'invalid_request': return new errors.InvalidRequest(text, refusal.status, options);
    case 'invalid_target': return new errors.InvalidTarget(text, options);
    // The refused scopes stay private (ledger): the response carries no `scope` member.
    case 'invalid_scope': return new errors.InvalidScope(text, undefined as unknown as string, options);
    case 'unauthorized_client': return new errors.UnauthorizedClient(text, options);
    case 'invalid_dpop_proof': return new errors.InvalidDpopProof(text, options);
    // Both constructors fix the description; Tether's is more precise.
    case 'invalid_grant': return withDescription(new errors.InvalidGrant(options), text);
    case 'invalid_client': return withDescription(new errors.InvalidClientAuth(options), text);
    case 'temporarily_unavailable': return unavailable(new errors.TemporarilyUnavailable(text, options));
  }
}

/**
 * Runs a step of a request; a refusal it throws leaves as its oidc-provider error. oidc-provider's
 * own errors (a DPoP nonce to use, say) and unexpected errors (a 500: a bug) pass unchanged.
 */
export async function withErrorBoundary<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw error instanceof Refusal ? oauthErrorOf(error) : error;
  }
}

/**
 * Runs a database step of a request: any failure that is not already a refusal or an OAuth error is
 * a {@link DatabaseFailure} (503), never a 500 the client could have caused.
 */
export async function databaseStep<T>(step: () => Promise<T>, description?: string): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof Refusal || error instanceof errors.OIDCProviderError) throw error;
    throw new DatabaseFailure(error, description);
  }
}

function withDescription(error: OAuthError, description: string): OAuthError {
  error.error_description = description;
  return error;
}

/** RFC 6749 §5.2 has no 5xx; `temporarily_unavailable` with 503 it is. The HTTP layer adds Retry-After. */
function unavailable(error: OAuthError): OAuthError {
  error.status = 503;
  error.statusCode = 503;
  return error;
}

import { Refusal } from './refusal.js';

/**
 * RFC 7009 §2.1: the server verifies that the token was issued to the client asking to revoke it.
 * Tether answers another client's token as oidc-provider does (`invalid_request`); both the opaque
 * tokens oidc-provider looks up (provider/create_provider.ts) and those the ledger answers for
 * (ledger/token_status_endpoints.ts) go through this one check.
 */
export function revocationRefusal(callerId: string, tokenClientId: string | undefined): Refusal | undefined {
  if (tokenClientId === callerId) return undefined;
  return new Refusal('invalid_request', 'client is not authorized to revoke the presented token', `client ${callerId} asked to revoke a token of client ${tokenClientId}`);
}

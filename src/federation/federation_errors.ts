import { Refusal } from '../oauth/refusal.js';

/** The external identity a token was issued for (recorded in the ledger, shown by `tether tokens show`). */
export type { ExternalIdentity } from '../ledger/events.js';

/**
 * RFC 6749 §5.2 has no 5xx; `temporarily_unavailable` with 503 as for a database outage (the HTTP
 * layer adds Retry-After). A trusted issuer whose keys cannot be fetched proves nothing either way:
 * the request is neither accepted nor refused for good.
 */
export function issuerUnavailable(cause: Error): Refusal {
  return new Refusal('temporarily_unavailable', 'a trusted issuer\'s keys cannot be obtained right now; retry later', cause.message, { cause });
}

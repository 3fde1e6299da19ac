/** A SPIFFE ID split into its trust domain and path (SPIFFE ID §2). */
export interface SpiffeId {
  readonly trustDomain: string;
  /** `/ns/orders/sa/worker`; empty for the trust domain's own ID. */
  readonly path: string;
}

// SPIFFE ID §2.1 (trust domain: lowercase letters, digits, `.`, `-`, `_`) and §2.2 (path segments of
// letters, digits, `.`, `-`, `_`, none empty, `.` or `..`); no port, user info, query or fragment.
const SPIFFE_ID = /^spiffe:\/\/([a-z0-9._-]+)((?:\/[A-Za-z0-9._-]+)*)$/;
/** SPIFFE ID §2.3: an ID is at most 2048 bytes. */
const MAX_LENGTH = 2048;

/** The parts of `uri` when it is a valid SPIFFE ID, else `undefined`. */
export function parseSpiffeId(uri: string): SpiffeId | undefined {
  if (uri.length > MAX_LENGTH) return undefined;
  const match = SPIFFE_ID.exec(uri);
  if (!match) return undefined;
  const [, trustDomain, path] = match as unknown as [string, string, string];
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) return undefined;
  return { trustDomain, path };
}

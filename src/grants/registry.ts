import type { Provider } from 'oidc-provider';
import { withErrorBoundary } from '../oauth/error_boundary.js';
import type { GrantHandler } from './grant.js';
import { clientCredentialsGrant } from './client_credentials.js';
import { tokenExchangeGrant } from './token_exchange/handler.js';

/**
 * The grants Tether serves, listed once (as oidc-provider's lib/actions/grants/index.js lists its
 * own). Registering them with oidc-provider, every client's `grant_types`, and the ledger events they
 * commit all follow from this list; adding a grant is its module and one line here
 * (docs/extending.md).
 */
export const GRANTS = [clientCredentialsGrant, tokenExchangeGrant] as const;

/** The `grant_type` values of {@link GRANTS}: what every configured client may use. */
export const GRANT_TYPES: readonly string[] = GRANTS.map((grant) => grant.type);

type Listed = (typeof GRANTS)[number];
type IntersectionOf<U> = (U extends unknown ? (value: U) => void : never) extends (value: infer I) => void ? I : never;

/** Everything some listed grant uses: each handler is given the whole and reads only its own part. */
export type GrantDependencies = IntersectionOf<Parameters<Listed['handler']>[0]>;

/**
 * Registers every listed grant's handler, with its parameters, at oidc-provider's token endpoint,
 * inside the error boundary: a Refusal a grant throws reaches the client as its OAuth error.
 */
export function registerGrants(
  provider: Provider,
  dependencies: GrantDependencies,
  /** Wraps each grant's handler (inside the boundary), e.g. to time it: observability/issuance_timing.ts. */
  around: (type: string, handler: GrantHandler) => GrantHandler = (_type, handler) => handler,
): void {
  for (const grant of GRANTS as readonly Listed[]) {
    const handler = around(grant.type, (grant.handler as (deps: GrantDependencies) => GrantHandler)(dependencies));
    provider.registerGrantType(grant.type, (ctx) => withErrorBoundary(() => handler(ctx)), [...grant.parameters], [...grant.duplicableParameters]);
  }
}

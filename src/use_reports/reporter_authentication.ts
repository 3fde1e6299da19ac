import type { Knex } from 'knex';
import type { Context } from 'koa';
import { boundTokenVerifier, OWN_API_ALGORITHMS, verifyOwnApiToken, type BoundTokenVerifierOptions } from '../keys/bound_token_verifier.js';
import { toHttpError, type VerifierError } from '../resource_server/index.js';

/**
 * Who may post a use report (docs/use-reports.md#authentication): an API's own client presenting a
 * Tether access token for the use-report resource (`useReports.resource`), checked by the
 * resource-server verifier as any API checks it (signature, `iss`, `aud`, expiry, and the sender
 * constraint: RFC 8705 certificate or RFC 9449 DPoP proof; bearer tokens are refused), then against
 * the ledger (a revoked token, or one below a revoked ancestor, is refused). As the admin API
 * (admin/authenticate.ts) does. Which resources the client may report for is the endpoint's check.
 */

export type ReporterAuthentication =
  | { ok: true; clientId: string; via: 'mtls' | 'dpop' }
  | { ok: false; status: 401; headers: Record<string, string>; body: { error: string }; reason: string };

export interface ReporterAuthenticatorOptions extends BoundTokenVerifierOptions {
  /** The use-report resource: the audience of reporters' tokens. */
  resource: string;
  knex: Knex;
}

const REALM = 'tether-use-reports';

export function createReporterAuthenticator(options: ReporterAuthenticatorOptions): (ctx: Context) => Promise<ReporterAuthentication> {
  const verifier = boundTokenVerifier(options, options.resource);
  const challenge = { realm: REALM, dpopAlgorithms: OWN_API_ALGORITHMS };

  // RFC 6750 §3.1: every refusal is 401 with a challenge and the error code only; the description
  // could tell a prober which check it failed.
  const refuse = (error: VerifierError, reason: string): ReporterAuthentication => {
    const response = toHttpError(error, challenge);
    return { ok: false, status: 401, headers: response.headers as Record<string, string>, body: { error: response.body.error }, reason };
  };

  return async (ctx) => {
    const presented = await verifyOwnApiToken(ctx, verifier(), options.knex);
    if (!presented.ok) return refuse(presented.error, presented.reason);
    const { claims, binding } = presented;
    return { ok: true, clientId: claims.client_id, via: binding === 'mtls' ? 'mtls' : 'dpop' };
  };
}

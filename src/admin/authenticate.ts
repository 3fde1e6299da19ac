import type { Knex } from 'knex';
import type { Context } from 'koa';
import type { AdminConfig } from '../config/schema.js';
import type { LiveSigningKeys } from '../keys/live_signing_keys.js';
import { boundTokenVerifier, OWN_API_ALGORITHMS, verifyOwnApiToken } from '../keys/bound_token_verifier.js';
import { toHttpError, VerifierError } from '../resource_server/index.js';
import { isDevSecret } from './dev_credential.js';

/**
 * Who may call the admin API (docs/admin.md#authentication):
 * - an admin client (`admin.clients`) presenting a Tether access token for the admin resource
 *   (`admin.resource`), checked by the resource-server verifier exactly as any API checks it
 *   (signature, `iss`, `aud`, expiry, and the sender constraint: RFC 8705 certificate or RFC 9449
 *   DPoP proof; bearer tokens are refused), then against the ledger (a revoked token, or one below
 *   a revoked ancestor, is refused);
 * - in `tether dev`, the local credential (admin/dev_credential.ts).
 * Anything else is 401 with a challenge and nothing more.
 */

export interface AdminCaller {
  /** The ledger's actor: `admin:<client_id>` or `admin:dev-credential`. */
  actor: string;
  clientId: string | undefined;
  /** How the caller proved itself. */
  via: 'dev-credential' | 'mtls' | 'dpop';
}

export type AdminAuthentication =
  | { ok: true; caller: AdminCaller }
  | { ok: false; status: number; headers: Record<string, string | readonly string[]>; body: { error: string; error_description?: string }; reason: string };

export interface AdminAuthenticatorOptions {
  issuer: string;
  admin: AdminConfig;
  keys: Pick<LiveSigningKeys, 'current'>;
  knex: Knex;
  /** `tether dev` only. */
  devSecret?: string;
}

const REALM = 'tether-admin';

export function createAdminAuthenticator(options: AdminAuthenticatorOptions): (ctx: Context) => Promise<AdminAuthentication> {
  const { admin } = options;
  const adminClients = new Set(admin.clients);
  const verifier = admin.resource ? boundTokenVerifier(options, admin.resource) : undefined;
  const challenge = { realm: REALM, dpopAlgorithms: OWN_API_ALGORITHMS };

  // Every refusal looks alike from outside: 401 (RFC 6750 §3.1), whatever the verifier's status.
  const refuse = (error: VerifierError, reason: string): AdminAuthentication => {
    const response = toHttpError(error, challenge);
    // The error code only: the description could tell a prober which check it failed.
    return { ok: false, status: 401, headers: response.headers as Record<string, string>, body: { error: response.body.error }, reason };
  };

  return async (ctx) => {
    const authorization = ctx.get('authorization');
    if (!authorization) return refuse(new VerifierError('ERR_NO_CREDENTIALS', 'no credentials'), 'no credentials');
    // node:http keeps the first of several Authorization fields; a request with two credentials is refused (RFC 6750 §3.1).
    if ((ctx.req.headersDistinct.authorization?.length ?? 0) > 1) {
      return refuse(new VerifierError('ERR_AUTHORIZATION_HEADER', 'more than one Authorization header'), 'more than one Authorization header');
    }
    const bearer = /^Bearer ([\x21-\x7E]+)$/i.exec(authorization)?.[1];
    if (options.devSecret !== undefined && bearer !== undefined && isDevSecret(bearer, options.devSecret)) {
      return { ok: true, caller: { actor: 'admin:dev-credential', clientId: undefined, via: 'dev-credential' } };
    }
    if (!verifier) return refuse(new VerifierError('ERR_TOKEN_MALFORMED', 'not an admin credential'), 'no admin resource configured; not the dev credential');
    const presented = await verifyOwnApiToken(ctx, verifier(), options.knex, (claims) => (adminClients.has(claims.client_id)
      ? undefined
      : { error: new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'not an admin client'), reason: `client ${claims.client_id} is not an admin client` }));
    if (!presented.ok) return refuse(presented.error, presented.reason);
    const { claims, binding } = presented;
    return { ok: true, caller: { actor: `admin:${claims.client_id}`, clientId: claims.client_id, via: binding === 'dpop' ? 'dpop' : 'mtls' } };
  };
}

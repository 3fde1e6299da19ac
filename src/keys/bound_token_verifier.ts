import type { Knex } from 'knex';
import type { Context } from 'koa';
import { certificateOf } from '../binding/request_certificate.js';
import { findTokenStanding } from '../ledger/lineage.js';
import type { LiveSigningKeys } from './live_signing_keys.js';
import { ALLOWED_JWS_ALGORITHMS } from '../provider/client_metadata.js';
import {
  createMemoryReplayStore, createVerifier, SUPPORTED_ALGORITHMS, verifyRequestHeadersOf, VerifierError,
  type AccessTokenClaims, type BindingKind, type JsonWebKeySet, type SupportedAlgorithm, type Verifier,
} from '../resource_server/index.js';

/**
 * A resource-server verifier for one of Tether's own APIs (the admin API, the use-report endpoint):
 * Tether's access tokens for `audience`, checked exactly as any API checks them (signature by a key
 * Tether publishes now, `iss`, `aud`, expiry, and the sender constraint: RFC 8705 certificate or
 * RFC 9449 DPoP proof; bearer tokens are refused). Rebuilt whenever the published keys change.
 */

export interface BoundTokenVerifierOptions {
  issuer: string;
  keys: Pick<LiveSigningKeys, 'current'>;
}

/** The signing algorithms Tether may use that the verifier accepts. */
export const isSupportedAlgorithm = (alg: string): alg is SupportedAlgorithm => (SUPPORTED_ALGORITHMS as readonly string[]).includes(alg);

/** The DPoP proof algorithms Tether's own APIs name in their challenges. */
export const OWN_API_ALGORITHMS: readonly SupportedAlgorithm[] = ALLOWED_JWS_ALGORITHMS.filter(isSupportedAlgorithm);

/** Builds the verifier for the keys published now, and again whenever they change. */
export function boundTokenVerifier(options: BoundTokenVerifierOptions, audience: string): () => Verifier {
  let built: { jwks: unknown; verifier: Verifier } | undefined;
  // One replay store for every verifier of this app: a proof seen before a key change stays seen.
  const replayStore = createMemoryReplayStore();
  return () => {
    const { publicJwks } = options.keys.current();
    if (built?.jwks !== publicJwks) {
      built = {
        jwks: publicJwks,
        verifier: createVerifier({
          issuer: options.issuer,
          audience,
          jwks: publicJwks as JsonWebKeySet,
          algorithms: OWN_API_ALGORITHMS,
          allowBearer: false,
          dpop: { replayStore },
        }),
      };
    }
    return built.verifier;
  };
}

/** A request's token for one of Tether's own APIs: verified and in good standing, or why not. */
export type OwnApiToken =
  | { ok: true; claims: AccessTokenClaims; binding: BindingKind }
  | { ok: false; error: VerifierError; reason: string };

/**
 * Checks the request's token as `verifier` does (the certificate from the connection or a trusted
 * hop), then `admit` (which client may call this API, when that is the API's rule), then the ledger:
 * a token Tether has no record of, a revoked one, or one below a revoked ancestor is refused, as it
 * would be at introspection. Rejects only when the ledger cannot be read (the caller answers 503).
 */
export async function verifyOwnApiToken(
  ctx: Context,
  verifier: Verifier,
  knex: Knex,
  admit: (claims: AccessTokenClaims) => { error: VerifierError; reason: string } | undefined = () => undefined,
): Promise<OwnApiToken> {
  let verified: { claims: AccessTokenClaims; binding: BindingKind };
  try {
    // Every Authorization field: node:http keeps only the first, and two credentials must be refused (RFC 6750 §3.1).
    verified = await verifier.verifyWithBinding({ method: ctx.method, url: ctx.href, headers: verifyRequestHeadersOf(ctx.req), clientCertificate: certificateOf(ctx)?.der });
  } catch (error) {
    if (error instanceof VerifierError) return { ok: false, error, reason: error.code };
    throw error;
  }
  const refused = admit(verified.claims);
  if (refused) return { ok: false, ...refused };
  const standing = await findTokenStanding(knex, verified.claims.jti);
  if (!standing.record || standing.record.revokedAt || standing.revokedAncestorId) {
    return { ok: false, error: new VerifierError('ERR_TOKEN_REVOKED', 'revoked'), reason: standing.record ? 'token revoked' : 'token not in the ledger' };
  }
  return { ok: true, ...verified };
}

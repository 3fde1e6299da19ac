import { decodeProtectedHeader } from 'jose';
import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { isJwsAlgorithm, JWS_ALGORITHMS } from '../config/jws_algorithms.js';

/** The public description of a client assertion signed with an algorithm Tether does not accept. */
export const UNSUPPORTED_ASSERTION_ALG = `client_assertion alg is not supported; supported: ${JWS_ALGORITHMS.join(', ')}`;

/**
 * oidc-provider refuses a `private_key_jwt` assertion (RFC 7523 §3) whose `alg` is not enabled with
 * the same `invalid_client` "client authentication failed" as a bad signature, so a client whose
 * library signs with another algorithm cannot tell what to fix. This middleware, around
 * oidc-provider's routes, rewrites that description to say the algorithm is unsupported.
 *
 * It looks only at the assertion the client sent, never at which check refused it: every
 * `invalid_client` answer to an assertion with an unsupported `alg` gets this description — whether
 * the client exists or not, uses private_key_jwt or not — because such an assertion can never
 * authenticate anyone. Keying it on oidc-provider's private "alg mismatch" (which it reaches only
 * after finding the client) would tell an anonymous caller which client ids exist. The supported
 * list is public (discovery's `token_endpoint_auth_signing_alg_values_supported`); the private
 * reason stays what oidc-provider recorded.
 */
export function describeUnsupportedAssertionAlg() {
  return async function describeUnsupportedAssertionAlgMiddleware(ctx: Context, next: Next): Promise<void> {
    await next();
    const body = ctx.body as { error?: unknown } | undefined;
    if (ctx.status !== 401 || typeof body !== 'object' || body === null || body.error !== 'invalid_client') return;
    if (!hasUnsupportedAlg((ctx as KoaContextWithOIDC).oidc?.params?.client_assertion)) return;
    ctx.body = { ...body, error_description: UNSUPPORTED_ASSERTION_ALG };
  };
}

function hasUnsupportedAlg(assertion: unknown): boolean {
  if (typeof assertion !== 'string') return false;
  try {
    return !isJwsAlgorithm(decodeProtectedHeader(assertion).alg);
  } catch {
    // Not a JWS: oidc-provider has answered that itself (invalid_request "invalid client_assertion format").
    return false;
  }
}

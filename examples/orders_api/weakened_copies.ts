/**
 * Deliberately weakened copies of the orders API's token check, for the tests that show the probe
 * names each weakness. Each is the real verifier with exactly one rule relaxed, the way such bugs
 * look in practice:
 *
 * - `no-audience-check`: trusts whatever `aud` the token names (a verifier configured per token).
 * - `no-binding-check`: takes the certificate thumbprint from the token's own `cnf` instead of the
 *   TLS connection, and accepts unbound tokens.
 * - `accepts-expired`: ignores `exp` (as `ignoreExpiration: true` does in some libraries).
 *
 * They check no revocation: Tether's introspection re-checks `aud`, `exp` and the binding record and
 * would hide the weakness. They model the common API that relies on short token lifetimes, so the
 * tests probe them without the `revoked` check. They are meant for certificate-bound tokens: the
 * verifiers made per request have no shared DPoP replay store, and the shifted clock of
 * `accepts-expired` would also judge DPoP proofs' `iat`.
 */
import { decodeJwt } from 'jose';
import {
  createHttpAdapter, createVerifier, type AccessTokenClaims, type FetchLike, type JsonWebKeySet, type KoaLikeMiddleware, type Verifier, type VerifyRequest,
} from '../../src/resource_server/index.js';
import type { Authenticate } from './orders_api.js';

/** The weaknesses the copies have. */
export type Weakness = 'no-audience-check' | 'no-binding-check' | 'accepts-expired';

/** What a weakened check needs to know. */
export interface WeakenedOptions {
  readonly issuer: string;
  readonly resource: string;
  /** Tether's public keys; without them they are fetched from the issuer with `fetch`. */
  readonly jwks?: JsonWebKeySet;
  readonly fetch?: FetchLike;
}

type IssuerSettings = Pick<WeakenedOptions, 'issuer' | 'jwks' | 'fetch'>;

/** The orders API's check with `weakness`. */
export function weakenedAuthentication(weakness: Weakness, options: WeakenedOptions): Authenticate {
  const settings: IssuerSettings = { issuer: options.issuer, jwks: options.jwks, fetch: options.fetch };
  const correct = createVerifier({ ...settings, audience: options.resource });
  const verify: VerifyFunction = {
    'no-audience-check': trustTokenAudience(settings),
    'no-binding-check': trustTokenConfirmation(createVerifier({ ...settings, audience: options.resource, allowBearer: true })),
    'accepts-expired': ignoreExpiry({ ...settings, audience: options.resource }),
  }[weakness];
  return (requiredScopes) => middleware(correct, verify, requiredScopes);
}

type VerifyFunction = (request: VerifyRequest, claims: Record<string, unknown>) => Promise<AccessTokenClaims>;

function trustTokenAudience(settings: IssuerSettings): VerifyFunction {
  const byAudience = new Map<string, Verifier>();
  return (request, claims) => {
    const audience = typeof claims.aud === 'string' ? claims.aud : 'none';
    let verifier = byAudience.get(audience);
    if (!verifier) {
      verifier = createVerifier({ ...settings, audience });
      byAudience.set(audience, verifier);
    }
    return verifier.verify(request);
  };
}

function trustTokenConfirmation(verifier: Verifier): VerifyFunction {
  return (request, claims) => {
    const thumbprint = (claims.cnf as Record<string, unknown> | undefined)?.['x5t#S256'];
    return verifier.verify({ ...request, clientCertificate: typeof thumbprint === 'string' ? thumbprint : request.clientCertificate });
  };
}

function ignoreExpiry(settings: IssuerSettings & { audience: string }): VerifyFunction {
  return (request, claims) => {
    const exp = typeof claims.exp === 'number' ? claims.exp : Infinity;
    // A clock that never passes the token's exp.
    return createVerifier({ ...settings, now: () => Math.min(Date.now(), exp * 1000 - 1000) }).verify(request);
  };
}

/** Like koaVerifier, with `verify` in place of the verifier's own check. */
function middleware(correct: Verifier, verify: VerifyFunction, requiredScopes: readonly string[]): KoaLikeMiddleware {
  const adapter = createHttpAdapter({ verifier: correct, requiredScopes });
  return async (ctx, next) => {
    try {
      const request = adapter.toVerifyRequest(ctx.req, ctx.originalUrl);
      ctx.state.token = await verify(request, unverifiedClaims(request));
    } catch (error) {
      const response = adapter.render(error);
      ctx.status = response.status;
      ctx.set(response.headers as Record<string, string | string[]>);
      ctx.body = response.body;
      return;
    }
    await next();
  };
}

function unverifiedClaims(request: VerifyRequest): Record<string, unknown> {
  const authorization = request.headers.authorization;
  const token = typeof authorization === 'string' ? authorization.replace(/^\S+\s+/, '') : '';
  try {
    return decodeJwt(token);
  } catch {
    return {};
  }
}

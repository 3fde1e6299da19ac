// The only module that reaches into oidc-provider's internals (pinned version, see package.json).
// oidc-provider validates DPoP proofs for its built-in grants but does not export the validator; our
// own grant handlers (client_credentials, token exchange) need the same validation.
// @ts-expect-error -- deep import of an untyped module of the pinned oidc-provider version
import validateDpopInternal from 'oidc-provider/lib/helpers/validate_dpop.js';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';

/** A DPoP proof that passed RFC 9449 §4.3 checks (signature, typ, alg, htm, htu, iat/nonce). */
export interface ValidatedDpopProof {
  thumbprint: string;
  jti: string;
  iat: number;
}

/** Validates the request's DPoP header; undefined when there is none. Throws InvalidDpopProof / UseDpopNonce. */
export async function validateDpopProof(provider: Provider, ctx: KoaContextWithOIDC): Promise<ValidatedDpopProof | undefined> {
  return (validateDpopInternal as (p: Provider, c: KoaContextWithOIDC) => Promise<ValidatedDpopProof | undefined>)(provider, ctx);
}

/**
 * Runs `check` as soon as oidc-provider has found the client a request names, before it checks the
 * client's credentials (shared/client_auth.js assigns the Client entity, then compares the secret or
 * verifies the assertion). oidc-provider has no configuration hook at that point; its own
 * client-based CORS check listens there too. An error thrown by `check` is the route's answer.
 */
export function beforeClientCredentialsCheck(provider: Provider, check: (ctx: KoaContextWithOIDC) => void): void {
  type Context = { ctx: KoaContextWithOIDC; entity(key: string, value: unknown): void };
  const prototype = provider.OIDCContext.prototype as unknown as Context;
  const assign = prototype.entity;
  prototype.entity = function entityThenCheck(this: Context, key: string, value: unknown): void {
    assign.call(this, key, value);
    if (key === 'Client') check(this.ctx);
  };
}

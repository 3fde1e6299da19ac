import type { KoaContextWithOIDC } from 'oidc-provider';
import { BINDING_METHODS, type BindingRequest, type SenderConstraint, type TokenBinding } from './methods.js';
import type { DpopProofs } from './dpop.js';
import { certificateOf } from './request_certificate.js';

/**
 * What the grants ask of binding/: bind a new token by a method (binding/methods.ts), and tell which
 * key of a method the caller presented on this request.
 */
export interface TokenBinder {
  /** The binding of the token about to be minted; throws the Refusal that says what is missing. */
  bindNewToken(ctx: KoaContextWithOIDC, method: SenderConstraint | 'bearer'): Promise<TokenBinding>;
  /** The thumbprint of the caller's key of `method` on this request, if it demonstrated one. */
  presentedKey(ctx: KoaContextWithOIDC, method: SenderConstraint): Promise<string | undefined>;
}

export function tokenBinder(dpop: DpopProofs): TokenBinder {
  const requestOf = (ctx: KoaContextWithOIDC): BindingRequest => ({ ctx, certificate: certificateOf(ctx), dpop });
  return {
    async bindNewToken(ctx, method) {
      if (method === 'bearer') return { method };
      return { method, ...(await BINDING_METHODS[method].bindNewToken(requestOf(ctx))) };
    },
    presentedKey: (ctx, method) => BINDING_METHODS[method].presentedKey(requestOf(ctx)),
  };
}

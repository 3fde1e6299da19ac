import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenBinder } from '../issuance_steps.js';
import type { ExchangeableToken, PresentedKeys } from './exchange_policy.js';

/**
 * The sender-constraint keys the caller demonstrated on this request: the TLS client certificate
 * (RFC 8705 §3) and, when a presented token is DPoP-bound, the key of a valid DPoP proof
 * (RFC 9449 §4.3). The proof's single use is enforced later, when the new token is bound to it
 * (issuance_steps.ts bindToken); oidc-provider caches the validation per request.
 */
export async function presentedKeysOf(binder: TokenBinder, ctx: KoaContextWithOIDC, tokens: readonly ExchangeableToken[]): Promise<PresentedKeys> {
  const certificate = binder.certificateOf(ctx);
  const dpopBound = tokens.some((token) => token.confirmation.jkt !== undefined);
  const proof = dpopBound && ctx.get('DPoP') ? await binder.validatedDpopProof(ctx) : undefined;
  return { certificateThumbprint: certificate?.thumbprint, dpopJkt: proof?.thumbprint };
}

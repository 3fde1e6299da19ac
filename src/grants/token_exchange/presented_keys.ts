import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenBinder } from '../../binding/token_binder.js';
import type { ExchangeableToken, PresentedKeys } from './exchange_policy.js';

/**
 * The sender-constraint keys the caller demonstrated on this request: the TLS client certificate
 * (RFC 8705 §3) and, when a presented token is DPoP-bound, the key of a valid DPoP proof
 * (RFC 9449 §4.3). The proof's single use is enforced later, when the new token is bound to it
 * (binding/methods.ts bindNewToken); oidc-provider caches the validation per request.
 */
export async function presentedKeysOf(binder: TokenBinder, ctx: KoaContextWithOIDC, tokens: readonly ExchangeableToken[]): Promise<PresentedKeys> {
  const dpopBound = tokens.some((token) => token.confirmation.jkt !== undefined);
  return {
    certificateThumbprint: await binder.presentedKey(ctx, 'mtls'),
    dpopJkt: dpopBound ? await binder.presentedKey(ctx, 'dpop') : undefined,
  };
}

import type { TLSSocket } from 'node:tls';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { oauthErrorOf } from '../oauth/error_boundary.js';
import { Refusal } from '../oauth/refusal.js';

/**
 * RFC 6749 §2.3.1: a client password travels only over TLS ("the authorization server MUST require
 * the use of TLS"), and so do RFC 7662 §4 and RFC 7009 §2 requests. A request that carries a client
 * secret (HTTP Basic or `client_secret`) on a connection that is not TLS, and not a trusted proxy's
 * hop for a TLS client (`ctx.secure`, see http/request_origin.ts), is refused before the secret is
 * even compared, on every endpoint. `allowOnPlainHttp` (config `listeners.http.allowClientSecrets`)
 * is a development opt-in for the plain HTTP listener.
 */
export function requireTlsForClientSecrets(allowOnPlainHttp: boolean) {
  return function requireTlsForClientSecret(ctx: KoaContextWithOIDC): void {
    if (ctx.secure || !carriesClientSecret(ctx)) return;
    if (allowOnPlainHttp && (ctx.req.socket as TLSSocket).encrypted !== true) return;
    throw oauthErrorOf(new Refusal(
      'invalid_request',
      'client secrets are accepted only over TLS (https); this request was sent over plain HTTP',
      'client secret sent over plain HTTP',
    ));
  };
}

function carriesClientSecret(ctx: KoaContextWithOIDC): boolean {
  return /^basic\s/i.test(ctx.get('authorization')) || ctx.oidc.params?.client_secret !== undefined;
}

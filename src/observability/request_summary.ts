import type { Context } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { LabelVocabulary } from './metric_labels.js';
import { UNKNOWN } from './metric_labels.js';

/**
 * What one answered request was, in bounded words (metric_labels.ts): the access log line and the
 * token counters are both made from this, after the route has answered.
 */
export interface RequestSummary {
  /** oidc-provider's route name (`token`, `introspection`, …), or undefined when none matched. */
  route: string | undefined;
  grant: string;
  /** The configured client the request authenticated as or claimed to be; `unknown` / `none` otherwise. */
  client: string;
  /** The resource of the issued token, or the one the request asked for. */
  resource: string;
  /** The answer's OAuth error code (`none` for a success). */
  error: string;
}

export function summarizeRequest(ctx: Context, vocabulary: LabelVocabulary): RequestSummary {
  const oidc = (ctx as KoaContextWithOIDC).oidc;
  const params = (oidc?.params ?? {}) as Record<string, unknown>;
  const body = ctx.status >= 400 && typeof ctx.body === 'object' && ctx.body !== null ? (ctx.body as Record<string, unknown>) : {};
  return {
    route: oidc?.route,
    grant: vocabulary.grant(params.grant_type),
    client: vocabulary.client(oidc?.client?.clientId ?? claimedClientId(ctx, params)),
    resource: vocabulary.resource(issuedResourceOf(oidc) ?? params.resource),
    error: vocabulary.error(body.error),
  };
}

/**
 * The client id a request claimed when oidc-provider did not find that client: `client_id` in the
 * body (client_secret_post, private_key_jwt), or the user part of HTTP Basic (RFC 6749 §2.3.1). Only
 * compared against the configuration, never recorded as sent.
 */
function claimedClientId(ctx: Context, params: Record<string, unknown>): string | undefined {
  if (typeof params.client_id === 'string' && params.client_id !== '') return params.client_id;
  const authorization = ctx.get('authorization');
  if (authorization === '') return undefined;
  const basic = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
  if (!basic) return UNKNOWN;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const user = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
  try {
    return user === '' ? UNKNOWN : decodeURIComponent(user.replace(/\+/g, '%20'));
  } catch {
    return UNKNOWN;
  }
}

/** The audience of the token this request minted (grants/issuance_steps.ts registers it on the request). */
function issuedResourceOf(oidc: KoaContextWithOIDC['oidc'] | undefined): string | undefined {
  const entities = oidc?.entities as { ClientCredentials?: { resourceServer?: { identifier(): string } } } | undefined;
  return entities?.ClientCredentials?.resourceServer?.identifier();
}

/**
 * What the gateway tells the forward-auth server about the request it is deciding on: the
 * original method and request target, in the headers of the gateway's convention.
 *
 * - `nginx` (`auth_request`): headers the nginx configuration sets on the subrequest,
 *   `X-Original-Method: $request_method` and `X-Original-URI: $request_uri`.
 * - `forwarded` (Traefik `forwardAuth`, Caddy `forward_auth`): `X-Forwarded-Method` and
 *   `X-Forwarded-Uri`. `X-Forwarded-Proto` and `X-Forwarded-Host` are never read: the URL a DPoP
 *   proof is compared with is the configured public base URL and the path.
 * - `envoy` (`ext_authz` HTTP service): the check request carries the original method and the
 *   original path behind the configured `path_prefix`.
 *
 * Each header must occur exactly once: a second copy means a client's header got past the
 * gateway, and which one the gateway set cannot be told (the same rule as RFC 9440 §4 for
 * `Client-Cert`). Only requests from a trusted gateway get here at all (forward_auth.ts).
 *
 * @module
 */
import { VerifierError } from './errors.js';

/** The gateway conventions. */
export const FORWARD_AUTH_STYLES = ['nginx', 'forwarded', 'envoy'] as const;
/** One of {@link FORWARD_AUTH_STYLES}. */
export type ForwardAuthStyle = (typeof FORWARD_AUTH_STYLES)[number];

/** The original request, as the gateway described it (the target not yet checked). */
export interface OriginalRequest {
  readonly method: string;
  readonly target: string;
}

/** Headers as `req.headersDistinct` gives them: every occurrence of each header. */
export type DistinctHeaders = { readonly [name: string]: readonly string[] | undefined };

/** Reads the original request of one check request. */
export type OriginalRequestReader = (method: string | undefined, url: string | undefined, headers: DistinctHeaders) => OriginalRequest;

const HEADERS: Record<Exclude<ForwardAuthStyle, 'envoy'>, { method: string; uri: string }> = {
  nginx: { method: 'x-original-method', uri: 'x-original-uri' },
  forwarded: { method: 'x-forwarded-method', uri: 'x-forwarded-uri' },
};

/** The longest method accepted: longer than any registered one (RFC 9110 §16.1) by far. */
const MAX_METHOD_LENGTH = 32;
// RFC 9110 §9.1 method = token (§5.6.2).
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The reader of a convention. `envoyPathPrefix` is Envoy's `path_prefix` (`/check`: a check for
 * `/orders` arrives as `/check/orders`); it must not end in "/".
 */
export function createOriginalRequestReader(style: ForwardAuthStyle, envoyPathPrefix = ''): OriginalRequestReader {
  if (!(FORWARD_AUTH_STYLES as readonly string[]).includes(style)) throw new TypeError(`style must be one of ${FORWARD_AUTH_STYLES.join(', ')}`);
  if (style === 'envoy') {
    if (envoyPathPrefix !== '' && (!envoyPathPrefix.startsWith('/') || envoyPathPrefix.endsWith('/'))) {
      throw new TypeError('envoyPathPrefix must start with "/" and not end with "/"');
    }
    return (method, url) => {
      const target = url ?? '';
      if (!target.startsWith(`${envoyPathPrefix}/`)) throw refused('the check request is not below the configured path prefix');
      return { method: checkedMethod(method), target: target.slice(envoyPathPrefix.length) };
    };
  }
  const names = HEADERS[style];
  return (_method, _url, headers) => ({
    method: checkedMethod(oneValue(headers, names.method)),
    target: oneValue(headers, names.uri),
  });
}

function oneValue(headers: DistinctHeaders, name: string): string {
  const values = headers[name];
  if (values === undefined || values.length === 0) throw refused(`the gateway did not send ${name}`);
  if (values.length > 1) throw refused(`${name} was sent more than once`);
  return values[0]!;
}

function checkedMethod(method: string | undefined): string {
  if (method === undefined || method.length > MAX_METHOD_LENGTH || !METHOD.test(method)) throw refused('the original request method is not an HTTP method');
  return method;
}

function refused(message: string): VerifierError {
  return new VerifierError('ERR_REQUEST_INVALID', message);
}

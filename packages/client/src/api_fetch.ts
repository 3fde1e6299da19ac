/**
 * Calling an API with a token: `Authorization` with the token's scheme, a fresh DPoP proof per request
 * (RFC 9449 §7: `htm`, `htu`, `iat`, `jti`, `ath`), the certificate on the connection for a
 * certificate-bound token, and the two answers a client handles itself:
 * - `401` with `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` (RFC 9449 §9): sent again once with it;
 * - `401` with `error="invalid_token"` (RFC 6750 §3.1): the token is dropped from the cache and the
 *   request sent once more with a new one. A second rejection is returned to the caller: no loop.
 * A request is repeated only if its body can be sent twice; redirects are never followed, since the
 * token and its proof are for this URL only.
 *
 * @module
 */
import { Headers, type Dispatcher, type RequestInit, type Response } from 'undici';
import type { AccessToken } from './access_token.js';
import { signDpopProof, type DpopKey } from './dpop.js';
import type { DpopNonces } from './dpop_nonces.js';
import { ClientError } from './errors.js';
import type { FetchFunction } from './transport.js';
import { challengeError, parseChallenges } from './www_authenticate.js';

/** Where the token comes from, and where a rejected one goes. */
export interface TokenSource {
  get(): Promise<AccessToken>;
  /** The API rejected `token`: it must not be handed out again. */
  drop(token: AccessToken): void;
}

/** Request options: undici's, without `dispatcher` (the client's) and with `redirect` never `follow`. */
export type ApiRequestInit = Omit<RequestInit, 'dispatcher'>;

/** A `fetch` for one API: undici's `fetch` with the token presented. */
export type ApiFetch = (input: string | URL, init?: ApiRequestInit) => Promise<Response>;

/** What presenting a token needs. */
export interface PresentationContext {
  readonly dpopKey: DpopKey | undefined;
  readonly nonces: DpopNonces;
  readonly now: () => number;
}

/** What the wrapper needs besides presenting. */
export interface ApiFetchContext extends PresentationContext {
  readonly source: TokenSource;
  readonly fetch: FetchFunction;
  readonly dispatcher: Dispatcher;
  /** When set, requests to URLs outside it are refused before any token is attached. */
  readonly baseUrl: URL | undefined;
}

// WHATWG Fetch upper-cases these methods when sending; the proof's `htm` must be what is sent.
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** The method as fetch sends it. */
export function normalizeMethod(method: string | undefined): string {
  const value = method ?? 'GET';
  return NORMALIZED_METHODS.has(value.toUpperCase()) ? value.toUpperCase() : value;
}

/** The `Authorization` and `DPoP` headers that present `token` on one request (for any HTTP client). */
export async function presentationHeaders(
  token: AccessToken,
  request: { readonly method: string; readonly url: string | URL },
  context: PresentationContext,
): Promise<Record<string, string>> {
  const headers: Record<string, string> = { authorization: `${token.type} ${token.value}` };
  if (token.type === 'DPoP') {
    if (context.dpopKey === undefined) throw new TypeError('a DPoP-bound token needs the client\'s DPoP key');
    headers.dpop = await signDpopProof(context.dpopKey, {
      htm: normalizeMethod(request.method), url: request.url, accessToken: token.value, nonce: context.nonces.nonceFor(request.url),
    }, context.now());
  }
  return headers;
}

/** The wrapper for one API. */
export function createApiFetch(context: ApiFetchContext): ApiFetch {
  return async (input, init = {}) => {
    const url = new URL(input);
    checkInsideApi(url, context.baseUrl);
    if (init.redirect === 'follow') throw new TypeError('redirects are not followed with a token: the token and its proof are for this URL');
    const given = new Headers(init.headers as ConstructorParameters<typeof Headers>[0]);
    if (given.has('authorization') || given.has('dpop')) throw new TypeError('Authorization and DPoP are set by the client');
    const repeatable = isReplayable(init.body);

    let token = await context.source.get();
    let nonceRetried = false;
    let tokenRetried = false;
    for (;;) {
      const headers = new Headers(given);
      for (const [name, value] of Object.entries(await presentationHeaders(token, { method: init.method ?? 'GET', url }, context))) headers.set(name, value);
      const response = await context.fetch(url.href, { ...init, headers, redirect: 'manual', dispatcher: context.dispatcher });
      if (response.status !== 401) {
        if (token.type === 'DPoP') context.nonces.remember(url, response.headers);
        return response;
      }
      const challenges = parseChallenges(response.headers.get('www-authenticate'));
      // RFC 9449 §9: the resource server wants a nonce in the proof.
      const nonce = token.type === 'DPoP' ? context.nonces.remember(url, response.headers) : undefined;
      if (!nonceRetried && repeatable && nonce !== undefined && challengeError(challenges, 'dpop') === 'use_dpop_nonce') {
        nonceRetried = true;
        await discard(response);
        continue;
      }
      // RFC 6750 §3.1: expired, revoked or otherwise invalid. Never hand this token out again.
      if (challengeError(challenges) === 'invalid_token') {
        context.source.drop(token);
        if (!tokenRetried && repeatable) {
          tokenRetried = true;
          await discard(response);
          token = await context.source.get();
          continue;
        }
      }
      return response;
    }
  };
}

/** The URL must be the base URL or below it (same origin, path under the base path). */
function checkInsideApi(url: URL, baseUrl: URL | undefined): void {
  if (baseUrl === undefined) return;
  const basePath = baseUrl.pathname.endsWith('/') ? baseUrl.pathname : `${baseUrl.pathname}/`;
  const inside = url.origin === baseUrl.origin && (url.pathname === baseUrl.pathname || url.pathname.startsWith(basePath));
  if (!inside) throw new ClientError('ERR_URL_OUTSIDE_API', `${url.origin}${url.pathname} is outside ${baseUrl.href}; the token is not sent there`);
}

/** Bodies that can be sent twice (a stream can be read only once). */
function isReplayable(body: RequestInit['body']): boolean {
  return body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams
    || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof Blob || body instanceof FormData;
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

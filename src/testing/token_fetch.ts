/**
 * `fetch` wrappers that call an API the way a well-behaved client of Tether does: the access token
 * in `Authorization`, the client certificate on the TLS connection for certificate-bound tokens
 * (RFC 8705), and a fresh DPoP proof with `ath` for every request of a DPoP-bound token (RFC 9449 §7).
 */
import { fetch, Headers, type RequestInit, type Response } from 'undici';
import type { AgentPool } from './agents.js';
import { dpopProof } from './dpop.js';
import type { IssuedAccessToken } from './token_client.js';

/** undici's `fetch` with the token presented; `init.dispatcher` is set by the wrapper. */
export type TokenFetch = (input: string | URL, init?: Omit<RequestInit, 'dispatcher'>) => Promise<Response>;

/** Options of {@link createTokenFetch}. */
export interface TokenFetchOptions {
  /** PEM bundle the API's TLS certificate chains to (default: the agent pool's CA). */
  readonly ca?: string;
}

// fetch upper-cases these methods (WHATWG Fetch "normalize"); the proof's htm must be what is sent.
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** The method as fetch sends it. */
export function normalizeMethod(method: string | undefined): string {
  const value = method ?? 'GET';
  return NORMALIZED_METHODS.has(value.toUpperCase()) ? value.toUpperCase() : value;
}

/** RFC 9449 §4.2: `htu` is the request URI without query and fragment. */
export function htuOf(url: string | URL): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/**
 * A `fetch` that presents `token` on every request. For a DPoP-bound token each request gets a new
 * proof (new `jti`, current `iat`, `htm`/`htu` of that request, `ath` of the token); when the API
 * answers `use_dpop_nonce` (RFC 9449 §9) the request is repeated once with the nonce, if its body
 * can be sent again.
 */
export function createTokenFetch(token: IssuedAccessToken, agents: AgentPool, options: TokenFetchOptions = {}): TokenFetch {
  const { credentials } = token;
  const dpopKey = token.tokenType === 'DPoP' ? credentials.dpopKey : undefined;
  if (token.tokenType === 'DPoP' && dpopKey === undefined) throw new TypeError('a DPoP-bound token needs its DPoP key');
  const nonces = new Map<string, string>();

  async function send(input: string | URL, init: Omit<RequestInit, 'dispatcher'>): Promise<Response> {
    const url = new URL(input);
    const headers = new Headers(init.headers);
    headers.set('authorization', `${token.tokenType} ${token.accessToken}`);
    if (dpopKey) {
      headers.set('dpop', await dpopProof(dpopKey, {
        htm: normalizeMethod(init.method), htu: htuOf(url), accessToken: token.accessToken, nonce: nonces.get(url.origin),
      }));
    }
    return fetch(url, { ...init, headers, dispatcher: agents.agentFor(credentials.certificate, options.ca) });
  }

  return async (input, init = {}) => {
    const response = await send(input, init);
    const nonce = response.headers.get('dpop-nonce');
    if (!dpopKey || !nonce) return response;
    nonces.set(new URL(input).origin, nonce);
    if (response.status !== 401 || !/error="use_dpop_nonce"/.test(response.headers.get('www-authenticate') ?? '') || !isReplayable(init.body)) {
      return response;
    }
    await response.body?.cancel();
    return send(input, init);
  };
}

/** Bodies that can be sent twice (a stream can be read only once). */
function isReplayable(body: RequestInit['body']): boolean {
  return body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams
    || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof Blob;
}

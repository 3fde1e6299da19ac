/**
 * The client a service uses to call APIs: tokens per (issuer, client, binding key, resource, scope
 * set) from a cache, requested with `client_credentials` (RFC 6749 §4.4) or token exchange (RFC 8693),
 * checked before use, and presented for the caller with their sender constraint.
 *
 * @module
 */
import { decodeJwt } from 'jose';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import type { AccessToken } from './access_token.js';
import { normalizeAccessRequest, requestMemoKey, type AccessRequest, type NormalizedAccessRequest } from './access_request.js';
import { createApiFetch, presentationHeaders, type ApiFetch } from './api_fetch.js';
import { subjectTokenHash, tokenCacheKey, type TokenHolder } from './cache_key.js';
import { authenticatesWithCertificate, createAuthenticator, type ClientAuthentication } from './client_auth.js';
import { prepareDpopKey, type DpopAlgorithm, type DpopKeyPair } from './dpop.js';
import { createDpopNonces } from './dpop_nonces.js';
import { ClientError } from './errors.js';
import { checkMetadata, discoverMetadata, tokenEndpointOf, type AuthorizationServerMetadata } from './metadata.js';
import { createTokenCache, type TokenCache, type TokenCacheOptions } from './token_cache.js';
import { postTokenRequest, type TokenEndpointContext } from './token_endpoint.js';
import { ACCESS_TOKEN_TYPE, acceptTokenResponse, type BindingExpectation } from './token_response.js';
import { certificateThumbprint, createTransport, type FetchFunction, type TlsOptions } from './transport.js';

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** How the client's tokens are sender-constrained. */
export type BindingOptions =
  /** RFC 9449: DPoP with `key` (default: a new non-extractable key of `alg`, default ES256). */
  | { readonly method: 'dpop'; readonly key?: DpopKeyPair; readonly alg?: DpopAlgorithm }
  /** RFC 8705 §3: bound to the certificate of `tls.cert`. */
  | { readonly method: 'mtls' }
  /** Unbound bearer tokens (RFC 6750), for the legacy APIs that accept nothing else. */
  | { readonly method: 'bearer' };

/** Options of {@link createTokenClient}. */
export interface TokenClientOptions {
  /** The issuer identifier; its metadata is discovered (RFC 8414) on first use. Give this or `metadata`. */
  readonly issuer?: string;
  /** The authorization server's metadata, instead of discovery (checked the same way). */
  readonly metadata?: AuthorizationServerMetadata;
  readonly clientId: string;
  readonly auth: ClientAuthentication;
  readonly binding: BindingOptions;
  /** The client certificate and trusted CAs for every connection. */
  readonly tls?: TlsOptions;
  /** A cache to share between clients, or options of this client's own one. */
  readonly cache?: TokenCache | TokenCacheOptions;
  /** Clock in epoch ms, for proofs, assertions and lifetimes (default `Date.now`; a shared cache has its own). */
  readonly now?: () => number;
  /** undici's `fetch` (default) or one with its signature. */
  readonly fetch?: FetchFunction;
  /** Per request to the authorization server (default 10 s). */
  readonly timeoutMs?: number;
}

/** One API to call: its resource, the scopes the calls need, and optionally where it is. */
export interface ApiTarget extends AccessRequest {
  /**
   * The API's URL (e.g. `https://orders.internal/v1/`): requests elsewhere are refused before a token
   * is attached. Recommended: the resource indicator is a name, not necessarily where the API is.
   */
  readonly baseUrl?: string | URL;
}

/** Options of an exchange. */
export interface ExchangeOptions extends AccessRequest {
  /**
   * When the received token expires (epoch ms), if it is opaque; a JWT's own `exp` is read. The
   * exchanged token is never used beyond it.
   */
  readonly subjectTokenExpiresAt?: number;
}

/** The calling side of one client. */
export interface TokenClient {
  readonly clientId: string;
  /** A token for exactly this resource and scope set: cached, or requested with `client_credentials`. */
  getToken(request: AccessRequest): Promise<AccessToken>;
  /**
   * A token for another API in exchange for one this service received (RFC 8693), bound to this
   * client's key; cached per (received token, resource, scopes), never beyond the received token's expiry.
   */
  exchange(receivedToken: string, request: ExchangeOptions): Promise<AccessToken>;
  /** A `fetch` that presents a token for `api` on every request. */
  fetchFor(api: ApiTarget): ApiFetch;
  /** A `fetch` that presents tokens exchanged for `receivedToken` (see {@link TokenClient.exchange}). */
  fetchExchanged(receivedToken: string, api: ApiTarget & Pick<ExchangeOptions, 'subjectTokenExpiresAt'>): ApiFetch;
  /** `Authorization` (and `DPoP`) headers presenting `token` on one request, for another HTTP client. */
  headersFor(token: AccessToken, request: { readonly method: string; readonly url: string | URL }): Promise<Record<string, string>>;
  /** Drops `token` from the cache (e.g. an API rejected it); the next call requests a new one. */
  invalidate(token: AccessToken): void;
  /** The undici dispatcher for API connections (presents the certificate of certificate-bound tokens). */
  readonly dispatcher: Dispatcher;
  /** Closes the client's connections. */
  close(): Promise<void>;
}

/** A cache entry's key and the request that fills it. */
interface CacheTarget {
  readonly key: string;
  readonly obtain: () => Promise<AccessToken>;
  /** Throws when no token may be used for this entry any more. */
  readonly check?: () => void;
}

/** What is known once discovery and key preparation are done. */
interface Prepared {
  readonly holder: TokenHolder;
  readonly expectation: BindingExpectation;
  readonly endpoint: TokenEndpointContext;
}

const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_SEEN_REQUESTS = 1024;

/** Creates a client. Nothing is fetched until the first token is needed. */
export function createTokenClient(options: TokenClientOptions): TokenClient {
  const { clientId, auth, binding } = options;
  if (typeof clientId !== 'string' || clientId === '') throw new TypeError('clientId must be a non-empty string');
  if ((options.issuer === undefined) === (options.metadata === undefined)) throw new TypeError('give exactly one of issuer and metadata');
  const authenticate = createAuthenticator(auth);
  const tls = options.tls ?? {};
  const usesCertificate = authenticatesWithCertificate(auth) || binding.method === 'mtls';
  if (usesCertificate && (tls.cert === undefined || tls.key === undefined)) {
    throw new TypeError(`${binding.method === 'mtls' ? 'binding mtls' : `auth ${auth.method}`} needs tls.cert and tls.key`);
  }
  if (!['dpop', 'mtls', 'bearer'].includes(binding.method)) throw new TypeError('binding.method must be dpop, mtls or bearer');
  const givenMetadata = options.metadata === undefined ? undefined : checkMetadata(options.metadata, undefined);
  const cache = isTokenCache(options.cache) ? options.cache : createTokenCache({ now: options.now, ...options.cache });
  const now = options.now ?? Date.now;
  const fetch = options.fetch ?? (undiciFetch as unknown as FetchFunction);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const transport = createTransport(tls, { tokenEndpoint: usesCertificate, api: binding.method === 'mtls' });
  const nonces = createDpopNonces();
  const certificateKey = binding.method === 'mtls' ? certificateThumbprint(tls.cert!) : undefined;

  async function prepare(): Promise<Prepared> {
    const metadata = givenMetadata ?? (await discoverMetadata(options.issuer!, { fetch, dispatcher: transport.tokenEndpoint, timeoutMs, maxBytes: MAX_RESPONSE_BYTES }));
    checkSupport(metadata);
    const dpopKey = binding.method === 'dpop' ? await prepareDpopKey(binding.alg ?? 'ES256', binding.key) : undefined;
    const expectation: BindingExpectation = dpopKey !== undefined
      ? { method: 'dpop', jkt: dpopKey.thumbprint }
      : certificateKey !== undefined ? { method: 'mtls', x5tS256: certificateKey } : { method: 'bearer' };
    return {
      holder: { issuer: metadata.issuer, clientId, bindingKey: bindingKeyOf(expectation) },
      expectation,
      endpoint: {
        issuer: metadata.issuer,
        tokenEndpoint: tokenEndpointOf(metadata, usesCertificate),
        clientId,
        authenticate,
        dpopKey,
        nonces,
        fetch,
        dispatcher: transport.tokenEndpoint,
        timeoutMs,
        maxBytes: MAX_RESPONSE_BYTES,
        now,
      },
    };
  }

  /** A method the server says it does not support would fail at every request: say so once, clearly. */
  function checkSupport(metadata: AuthorizationServerMetadata): void {
    const methods = metadata.token_endpoint_auth_methods_supported;
    if (methods !== undefined && auth.method !== 'client_assertion' && !methods.includes(auth.method)) {
      throw new ClientError('ERR_DISCOVERY_FAILED', `${metadata.issuer} does not support client authentication ${auth.method}`);
    }
    const algs = metadata.dpop_signing_alg_values_supported;
    if (binding.method === 'dpop' && algs !== undefined && !algs.includes(binding.alg ?? 'ES256')) {
      throw new ClientError('ERR_DISCOVERY_FAILED', `${metadata.issuer} does not accept DPoP proofs signed with ${binding.alg ?? 'ES256'}`);
    }
  }

  // Discovery and key preparation run once; a failure is not kept, so the next call tries again.
  let prepared: Prepared | undefined;
  let preparing: Promise<Prepared> | undefined;
  function ready(): Prepared | Promise<Prepared> {
    if (prepared !== undefined) return prepared;
    preparing ??= prepare().then(
      (value) => (prepared = value),
      (error: unknown) => {
        preparing = undefined;
        throw error;
      },
    );
    return preparing;
  }

  // Which entry each token came from (a token's granted scopes may be narrower than the key's requested ones).
  const cacheKeys = new WeakMap<AccessToken, string>();
  async function remembered(key: string, obtaining: Promise<AccessToken>): Promise<AccessToken> {
    const token = await obtaining;
    cacheKeys.set(token, key);
    return token;
  }

  async function requestAccessToken(p: Prepared, request: NormalizedAccessRequest, form: Record<string, string | undefined>, exchange?: { notAfter?: number }): Promise<AccessToken> {
    const { body, obtainedAt } = await postTokenRequest(p.endpoint, {
      ...form,
      resource: request.resource,
      scope: request.scopes.length === 0 ? undefined : request.scopes.join(' '),
    });
    return acceptTokenResponse(body, {
      request, binding: p.expectation, obtainedAt, now: now(), exchange: exchange !== undefined, notAfter: exchange?.notAfter,
    });
  }

  /** The cache key and the request of `client_credentials` for `request`. */
  function clientCredentials(p: Prepared, request: NormalizedAccessRequest): CacheTarget {
    const key = tokenCacheKey(p.holder, request);
    return { key, obtain: () => remembered(key, requestAccessToken(p, request, { grant_type: 'client_credentials' })) };
  }

  // Requests seen before, by their exact form: checked and normalized once (bounded; emptied when full).
  const seenRequests = new Map<string, CacheTarget>();
  function clientCredentialsFor(p: Prepared, request: AccessRequest): CacheTarget {
    const memoKey = requestMemoKey(request);
    const seen = memoKey === undefined ? undefined : seenRequests.get(memoKey);
    if (seen !== undefined) return seen;
    const target = clientCredentials(p, normalizeAccessRequest(request));
    if (memoKey !== undefined) {
      if (seenRequests.size >= MAX_SEEN_REQUESTS) seenRequests.clear();
      seenRequests.set(memoKey, target);
    }
    return target;
  }

  /** The cache key and the request of an exchange of `subjectToken` for `request`. */
  function exchangeOf(p: Prepared, subjectToken: string, request: NormalizedAccessRequest, subjectExpiresAt: number | undefined): CacheTarget {
    const key = tokenCacheKey(p.holder, request, subjectTokenHash(subjectToken));
    // RFC 8693 §2.1
    const obtain = () => remembered(key, requestAccessToken(p, request, {
      grant_type: TOKEN_EXCHANGE_GRANT, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE,
    }, { notAfter: subjectExpiresAt }));
    // Checked at every use, cached or not: nothing obtained for an expired subject token is used.
    const check = () => {
      if (subjectExpiresAt !== undefined && subjectExpiresAt <= now()) throw new ClientError('ERR_SUBJECT_TOKEN_EXPIRED', 'the token to exchange is expired');
    };
    return { key, obtain, check };
  }

  function fetchWith(api: ApiTarget, tokenFor: (p: Prepared) => CacheTarget): ApiFetch {
    const baseUrl = api.baseUrl === undefined ? undefined : new URL(api.baseUrl);
    let target: CacheTarget | undefined;
    return createApiFetch({
      source: {
        async get() {
          target ??= tokenFor(await ready());
          target.check?.();
          return cache.get(target.key, target.obtain);
        },
        drop(token) {
          if (target !== undefined) cache.drop(target.key, token.value);
        },
      },
      // Read at each presentation, which always follows a token, hence preparation.
      get dpopKey() {
        return prepared?.endpoint.dpopKey;
      },
      nonces,
      now,
      fetch,
      dispatcher: transport.api,
      baseUrl,
    });
  }

  return {
    clientId,
    dispatcher: transport.api,
    getToken(request) {
      // The hot path of a cache hit: no await before the cache, no normalization of a request seen before.
      if (prepared !== undefined) {
        try {
          const { key, obtain } = clientCredentialsFor(prepared, request);
          return cache.get(key, obtain);
        } catch (error) {
          return Promise.reject(error);
        }
      }
      return (async () => {
        normalizeAccessRequest(request);
        const { key, obtain } = clientCredentialsFor(await ready(), request);
        return cache.get(key, obtain);
      })();
    },
    async exchange(receivedToken, request) {
      const normalized = normalizeAccessRequest(request);
      const { key, obtain, check } = exchangeOf(await ready(), checkSubjectToken(receivedToken), normalized, subjectExpiry(receivedToken, request.subjectTokenExpiresAt));
      check?.();
      return cache.get(key, obtain);
    },
    fetchFor(api) {
      const normalized = normalizeAccessRequest(api);
      return fetchWith(api, (p) => clientCredentials(p, normalized));
    },
    fetchExchanged(receivedToken, api) {
      const normalized = normalizeAccessRequest(api);
      const subject = checkSubjectToken(receivedToken);
      const expiresAt = subjectExpiry(subject, api.subjectTokenExpiresAt);
      return fetchWith(api, (p) => exchangeOf(p, subject, normalized, expiresAt));
    },
    async headersFor(token, request) {
      await ready();
      return presentationHeaders(token, request, { dpopKey: prepared?.endpoint.dpopKey, nonces, now });
    },
    invalidate(token) {
      const key = cacheKeys.get(token);
      if (key !== undefined) cache.drop(key, token.value);
    },
    close: () => transport.close(),
  };
}

function bindingKeyOf(expectation: BindingExpectation): string {
  switch (expectation.method) {
    case 'dpop':
      return `jkt:${expectation.jkt}`;
    case 'mtls':
      return `x5t#S256:${expectation.x5tS256}`;
    case 'bearer':
      return 'bearer';
  }
}

function isTokenCache(cache: TokenClientOptions['cache']): cache is TokenCache {
  return typeof (cache as TokenCache | undefined)?.get === 'function';
}

function checkSubjectToken(token: unknown): string {
  if (typeof token !== 'string' || token === '') throw new TypeError('the received token must be a non-empty string');
  return token;
}

/** The subject token's expiry: the earlier of a JWT's `exp` (read, not verified: it only shortens) and the one given. */
function subjectExpiry(token: string, given: number | undefined): number | undefined {
  let exp: number | undefined;
  try {
    const claims = decodeJwt(token);
    exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  } catch {
    exp = undefined;
  }
  const bounds = [exp, given].filter((value): value is number => value !== undefined);
  return bounds.length === 0 ? undefined : Math.min(...bounds);
}

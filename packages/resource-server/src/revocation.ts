/**
 * Optional revocation check after a token passed every local check: ask the issuer (RFC 7662
 * token introspection) or consult a cached list of revoked `jti` values. Off by default: a
 * self-contained JWT is valid until `exp`, and Tether keeps lifetimes to minutes.
 *
 * Both variants fail closed: when the answer cannot be had, the request gets 503
 * (`ERR_REVOCATION_UNAVAILABLE`), never access. A revocation list that fails to refresh is used
 * for a bounded time only (`maxStaleMs`, default five refresh periods): after that every request is
 * refused until a load succeeds, so a revocation is never ignored for longer than that.
 *
 * @module
 */
import type { JsonObject } from './compact_jws.js';
import { VerifierError } from './errors.js';
import { fetchJson, type FetchJsonOptions } from './fetch_json.js';
import { singleFlight } from './single_flight.js';
import type { AccessTokenClaims } from './verify_access_token.js';

/** How the resource server authenticates to the introspection endpoint (RFC 7662 §2.1). */
export type IntrospectionClientAuth =
  /** RFC 6749 §2.3.1 HTTP Basic with the form-encoded client id and secret. */
  | { readonly method?: 'client_secret_basic'; readonly clientId: string; readonly clientSecret: string }
  /** RFC 6749 §2.3.1 credentials in the request body. */
  | { readonly method: 'client_secret_post'; readonly clientId: string; readonly clientSecret: string }
  /**
   * RFC 8705 §2: mutual TLS; `client_id` is sent in the body and the certificate comes from the
   * connection, i.e. from `fetchOptions.dispatcher` (an undici `Agent` with `connect: { cert, key }`)
   * or from the verifier's `fetch`.
   */
  | { readonly method: 'tls_client_auth'; readonly clientId: string }
  /** Anything else (a pre-built `Authorization` header, private_key_jwt made by the caller). */
  | { readonly method: 'custom'; readonly headers?: Readonly<Record<string, string>>; readonly body?: Readonly<Record<string, string>> };

/** Options of the introspection check. */
export interface IntrospectionOptions {
  /** The introspection endpoint; default: `introspection_endpoint` from the issuer metadata. */
  readonly endpoint?: string;
  readonly clientAuth: IntrospectionClientAuth;
  /**
   * Extra `fetch` options, e.g. `{ dispatcher }` for mutual TLS. `dispatcher` is typed loosely:
   * an `Agent` of the `undici` package and the one Node's `fetch` declares are distinct types.
   */
  readonly fetchOptions?: Omit<RequestInit, 'dispatcher'> & { readonly dispatcher?: unknown };
  /**
   * How long an `active: true` answer is reused for the same `jti` (default 0: ask every time).
   * Revocation takes up to this long to be seen.
   */
  readonly cacheTtlMs?: number;
}

/** Options of the revocation list check. */
export interface RevocationListOptions {
  /** Loads the `jti` values of revoked, not yet expired tokens. */
  readonly load: () => Promise<Iterable<string>>;
  /** How long a loaded list is used before it is loaded again (default 60 000 ms). */
  readonly refreshMs?: number;
  /**
   * How old the last successfully loaded list may get while refreshes fail (default five times
   * `refreshMs`: 5 minutes with the default refresh). Until then a failed refresh keeps the last
   * list; past it, every request gets 503 `ERR_REVOCATION_UNAVAILABLE` until a load succeeds. After a
   * failed load the next one is tried no sooner than `min(refreshMs, 5 s)` later (requests in between
   * get the last list or 503, without calling `load`). At least `refreshMs`.
   */
  readonly maxStaleMs?: number;
  /**
   * How long a request waits for a load (default: the verifier's `httpTimeoutMs`, 5 000 ms). A load
   * that takes longer counts as failed for that request (it keeps running and is used when it ends).
   */
  readonly loadTimeoutMs?: number;
}

/**
 * Revocation checking: `{ introspect }`, or `{ revocationList }` given as options or as just the
 * loading function (refreshed every 60 s).
 */
export type RevocationOptions =
  | { readonly introspect: IntrospectionOptions }
  | { readonly revocationList: RevocationListOptions | RevocationListOptions['load'] };

/** Checks that a validated token has not been revoked. */
export interface RevocationChecker {
  check(token: string, claims: AccessTokenClaims): Promise<void>;
}

/** What the checkers need from the verifier. */
export interface RevocationContext {
  /** Also the default wait for a revocation list load (`timeoutMs`). */
  readonly http: FetchJsonOptions;
  /** Resolves the introspection endpoint from the issuer metadata. */
  readonly discoverEndpoint: () => Promise<string | undefined>;
  readonly now: () => number;
}

/** Creates the checker the options describe. */
export function createRevocationChecker(options: RevocationOptions, context: RevocationContext): RevocationChecker {
  if ('introspect' in options) return createIntrospectionChecker(options.introspect, context);
  const list = options.revocationList;
  return createRevocationListChecker(typeof list === 'function' ? { load: list } : list, context);
}

const MAX_CACHED_INTROSPECTIONS = 10_000;

function createIntrospectionChecker(options: IntrospectionOptions, context: RevocationContext): RevocationChecker {
  const cacheTtlMs = options.cacheTtlMs ?? 0;
  const activeUntil = new Map<string, number>();

  async function endpoint(): Promise<string> {
    const url = options.endpoint ?? (await context.discoverEndpoint());
    if (url === undefined) throw new Error('the issuer publishes no introspection_endpoint');
    return url;
  }

  return {
    async check(token, claims) {
      const now = context.now();
      const cached = activeUntil.get(claims.jti);
      if (cached !== undefined && cached > now) return;
      let answer: JsonObject;
      try {
        answer = await fetchJson(await endpoint(), introspectionRequest(token, options), context.http);
      } catch (cause) {
        throw new VerifierError('ERR_REVOCATION_UNAVAILABLE', 'token status could not be checked', { cause });
      }
      // RFC 7662 §2.2: anything but `active: true` means the token must not be accepted.
      if (answer.active !== true) throw new VerifierError('ERR_TOKEN_REVOKED', 'access token is not active');
      if (cacheTtlMs > 0) remember(activeUntil, claims.jti, Math.min(now + cacheTtlMs, claims.exp * 1000));
    },
  };
}

function remember(cache: Map<string, number>, jti: string, until: number): void {
  cache.delete(jti);
  cache.set(jti, until);
  if (cache.size > MAX_CACHED_INTROSPECTIONS) cache.delete(cache.keys().next().value as string);
}

/** RFC 7662 §2.1: a form POST with `token` and `token_type_hint`, authenticated as the client. */
function introspectionRequest(token: string, options: IntrospectionOptions): RequestInit {
  const body = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const auth = options.clientAuth;
  switch (auth.method) {
    case undefined:
    case 'client_secret_basic':
      headers.authorization = `Basic ${Buffer.from(`${formEncode(auth.clientId)}:${formEncode(auth.clientSecret)}`).toString('base64')}`;
      break;
    case 'client_secret_post':
      body.set('client_id', auth.clientId);
      body.set('client_secret', auth.clientSecret);
      break;
    case 'tls_client_auth':
      body.set('client_id', auth.clientId);
      break;
    case 'custom':
      Object.assign(headers, auth.headers);
      for (const [name, value] of Object.entries(auth.body ?? {})) body.set(name, value);
      break;
  }
  return { ...(options.fetchOptions as RequestInit | undefined), method: 'POST', headers, body: body.toString() };
}

/** RFC 6749 §2.3.1: id and secret are form-encoded before they are joined for Basic. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/** A failed refresh is retried no sooner than this while the last list may still be used. */
const MAX_RETRY_DELAY_MS = 5000;

function createRevocationListChecker(options: RevocationListOptions, context: RevocationContext): RevocationChecker {
  const { refreshMs, maxStaleMs, loadTimeoutMs } = revocationListTimings(options, context);
  const retryDelayMs = Math.min(refreshMs, MAX_RETRY_DELAY_MS);
  let revoked: ReadonlySet<string> | undefined;
  /** When the list in use was loaded: the last successful load, never a failed one. */
  let loadedAt = -Infinity;
  /** After a failed load, none is tried before then: the last list serves while young enough, or 503. */
  let retryAt = -Infinity;
  let lastFailure: unknown;
  const reload = singleFlight(async () => {
    const jtis = await options.load();
    const list = new Set(jtis);
    revoked = list;
    loadedAt = context.now();
    return list;
  }).run;

  const usable = (now: number) => revoked !== undefined && now - loadedAt < maxStaleMs;

  async function currentList(): Promise<ReadonlySet<string>> {
    const now = context.now();
    if (revoked !== undefined && now - loadedAt < refreshMs) return revoked;
    // A source that just failed is not asked again by every request.
    if (now < retryAt) return lastListOrUnavailable(now);
    try {
      return await withTimeout(reload(), loadTimeoutMs);
    } catch (cause) {
      lastFailure = cause;
      const failedAt = context.now();
      retryAt = failedAt + retryDelayMs;
      return lastListOrUnavailable(failedAt);
    }
  }

  function lastListOrUnavailable(now: number): ReadonlySet<string> {
    if (usable(now)) return revoked!;
    // Fail closed past the bound: an old list would let through every token revoked since it loaded.
    throw new VerifierError('ERR_REVOCATION_UNAVAILABLE', 'revocation list is unavailable', { cause: lastFailure });
  }

  return {
    async check(_token, claims) {
      const list = await currentList();
      if (list.has(claims.jti)) throw new VerifierError('ERR_TOKEN_REVOKED', 'access token has been revoked');
    },
  };
}

/** The list's timings, defaulted and checked; throws `TypeError` naming the bad option. */
function revocationListTimings(options: RevocationListOptions, context: RevocationContext) {
  const refreshMs = options.refreshMs ?? 60_000;
  const maxStaleMs = options.maxStaleMs ?? 5 * refreshMs;
  const loadTimeoutMs = options.loadTimeoutMs ?? context.http.timeoutMs;
  if (typeof options.load !== 'function') throw new TypeError('revocationList.load must be a function');
  if (!(refreshMs > 0 && Number.isFinite(refreshMs))) throw new TypeError('revocationList.refreshMs must be a positive number of milliseconds');
  if (!(maxStaleMs >= refreshMs && Number.isFinite(maxStaleMs))) throw new TypeError('revocationList.maxStaleMs must be a number of milliseconds of at least refreshMs');
  if (!(loadTimeoutMs > 0 && Number.isFinite(loadTimeoutMs))) throw new TypeError('revocationList.loadTimeoutMs must be a positive number of milliseconds');
  return { refreshMs, maxStaleMs, loadTimeoutMs };
}

/** `promise`, or a rejection once `ms` have passed (the promise itself keeps running). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`revocation list load took longer than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet, createRemoteJWKSet, customFetch, errors as joseErrors, type FetchImplementation, type JSONWebKeySet, type JWTVerifyGetKey,
} from 'jose';
import type { TrustedIssuerConfig } from '../config/schema.js';
import { fetchJsonDocument, type FetchLike } from './fetch_document.js';

/**
 * Where a trusted issuer's verification keys come from, and how long they are believed. Keys come
 * only from the configuration: the issuer's discovery document, an explicit `jwks_uri`, or a file;
 * never from a URL named inside a token (verify_external_token.ts refuses `jku`, `x5u`, `x5c`, `jwk`).
 *
 * Remote keys are jose's createRemoteJWKSet: cached for `keyCacheMaxAge`, fetched again when a
 * token names an unknown `kid` but at most once per `keyRefetchCooldown` (an unknown-kid storm
 * costs the issuer one request per cooldown), one fetch in flight at a time.
 */

/** The issuer's keys could not be obtained: the request gets 503, never an acceptance. */
export class IssuerUnavailableError extends Error {
  override name = 'IssuerUnavailableError';
}

/** Largest discovery document or JWKS read from an issuer (a hostile one must not exhaust memory). */
const MAX_DOCUMENT_BYTES = 256 * 1024;

/** A key lookup for jwtVerify; failures to obtain keys are IssuerUnavailableError, an unknown kid is jose's own error. */
export type IssuerKeyLookup = JWTVerifyGetKey;

export interface IssuerKeyOptions {
  /** HTTP client for the issuer's endpoints (tests pass one; default: undici with the issuer's `caFile`). */
  fetch?: FetchLike;
  /** Time source (seconds resolution suffices; used for the discovery retry cooldown). */
  now?: () => number;
}

/** The key lookup of one trusted issuer. Reads `jwksFile` / `caFile` now: a missing file fails the start. */
export async function issuerKeyLookup(issuer: TrustedIssuerConfig, options: IssuerKeyOptions = {}): Promise<IssuerKeyLookup> {
  if (issuer.jwksFile !== undefined) return localKeys(issuer.jwksFile);
  const fetch = options.fetch ?? await issuerFetch(issuer);
  const now = options.now ?? Date.now;
  if (issuer.jwksUri !== undefined) return remoteKeys(new URL(issuer.jwksUri), issuer, fetch, now);
  return discoveredKeys(issuer, fetch, now);
}

async function localKeys(file: string): Promise<IssuerKeyLookup> {
  const jwks = JSON.parse(await readFile(file, 'utf8')) as JSONWebKeySet;
  return createLocalJWKSet(signatureKeysOf(jwks));
}

/**
 * The keys of a set that verify JWTs. A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4.2) is
 * a JWKS whose keys say `use: jwt-svid` (JWT-SVID signing keys: verify) or `x509-svid` (X.509 CAs:
 * never a JWT key); jose selects only `use: sig` (or none), so the former are read as `sig` and the
 * latter left out. Any other set is unchanged.
 */
export function signatureKeysOf(jwks: JSONWebKeySet): JSONWebKeySet {
  if (!Array.isArray(jwks?.keys)) return jwks;
  const keys = jwks.keys
    .filter((key) => key.use !== 'x509-svid')
    .map((key) => (key.use === 'jwt-svid' ? { ...key, use: 'sig' } : key));
  return { keys };
}

/**
 * undici, trusting the issuer's CA bundle when one is configured (a cluster CA, a corporate CA).
 * Loaded here, when an issuer's keys are to be fetched, not by every start of the server.
 */
async function issuerFetch(issuer: TrustedIssuerConfig): Promise<FetchLike> {
  const ca = issuer.caFile === undefined ? undefined : await readFile(issuer.caFile, 'utf8');
  const { Agent, fetch: undiciFetch } = await import('undici');
  const dispatcher = ca === undefined ? undefined : new Agent({ connect: { ca } });
  return ((url: string, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher })) as unknown as FetchLike;
}

/**
 * jose's remote JWKS, reading through the bounded JSON fetcher. jose's cooldown counts from the last
 * successful fetch; after a failed one the JWKS is not asked again for a cooldown either (a request
 * that needs it meanwhile gets 503 at once), so a down issuer is not asked once per request.
 */
function remoteKeys(jwksUri: URL, issuer: TrustedIssuerConfig, fetch: FetchLike, now: () => number): IssuerKeyLookup {
  const timeoutMs = Math.round(issuer.fetchTimeout * 1000);
  let failure: { at: number; reason: string } | undefined;
  const boundedFetch: FetchImplementation = async (url) => {
    if (failure !== undefined && now() - failure.at < issuer.keyRefetchCooldown * 1000) {
      throw new Error(`${failure.reason} (retried after ${issuer.keyRefetchCooldown} s)`);
    }
    try {
      const json = await fetchJsonDocument(url, { fetch, timeoutMs, maxBytes: MAX_DOCUMENT_BYTES });
      failure = undefined;
      return new Response(JSON.stringify(signatureKeysOf(json as unknown as JSONWebKeySet)), { status: 200, headers: { 'content-type': 'application/json' } });
    } catch (error) {
      failure = { at: now(), reason: reasonOf(error) };
      throw error;
    }
  };
  const keys = createRemoteJWKSet(jwksUri, {
    timeoutDuration: timeoutMs,
    cooldownDuration: issuer.keyRefetchCooldown * 1000,
    cacheMaxAge: issuer.keyCacheMaxAge * 1000,
    [customFetch]: boundedFetch,
  });
  return async (header, token) => {
    try {
      return await keys(header, token);
    } catch (error) {
      // An unknown kid (after the refetch the cooldown allows) is the token's fault; anything else
      // — no answer, an HTTP error, garbage — is the issuer's, and proves nothing either way.
      if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys) throw error;
      throw new IssuerUnavailableError(`keys of ${issuer.issuer} unavailable from ${jwksUri.href}: ${reasonOf(error)}`, { cause: error });
    }
  };
}

/**
 * OpenID Connect Discovery 1.0 §4 (`/.well-known/openid-configuration` appended to the issuer) or
 * RFC 8414 §3.1 (`/.well-known/oauth-authorization-server` inserted before the issuer's path). The
 * document's `issuer` must be the configured one (OIDC Discovery §4.3, RFC 8414 §3.3) and its
 * `jwks_uri` https (or loopback http). Fetched once; after a failure, again at most once per
 * `keyRefetchCooldown` (requests meanwhile get 503 at once, so a down issuer is not hammered).
 */
function discoveredKeys(issuer: TrustedIssuerConfig, fetch: FetchLike, now: () => number): IssuerKeyLookup {
  const timeoutMs = Math.round(issuer.fetchTimeout * 1000);
  let resolved: Promise<IssuerKeyLookup> | undefined;
  let failedAt: number | undefined;
  let lastFailure = '';

  const discover = async (): Promise<IssuerKeyLookup> => {
    const url = discoveryUrlOf(issuer.issuer, issuer.discovery);
    let metadata: Record<string, unknown>;
    try {
      metadata = await fetchJsonDocument(url, { fetch, timeoutMs, maxBytes: MAX_DOCUMENT_BYTES });
    } catch (error) {
      throw new IssuerUnavailableError(`discovery of ${issuer.issuer} failed: ${reasonOf(error)}`, { cause: error });
    }
    if (metadata.issuer !== issuer.issuer) {
      throw new IssuerUnavailableError(`discovery document of ${issuer.issuer} names issuer ${JSON.stringify(metadata.issuer)?.slice(0, 128)}`);
    }
    if (typeof metadata.jwks_uri !== 'string' || !isFetchable(metadata.jwks_uri)) {
      throw new IssuerUnavailableError(`discovery document of ${issuer.issuer} has no https jwks_uri`);
    }
    return remoteKeys(new URL(metadata.jwks_uri), issuer, fetch, now);
  };

  return async (header, token) => {
    if (resolved === undefined) {
      if (failedAt !== undefined && now() - failedAt < issuer.keyRefetchCooldown * 1000) {
        throw new IssuerUnavailableError(`${lastFailure} (retried after ${issuer.keyRefetchCooldown} s)`);
      }
      const attempt = discover();
      resolved = attempt;
      attempt.catch((error: unknown) => {
        if (resolved === attempt) resolved = undefined;
        failedAt = now();
        lastFailure = reasonOf(error);
      });
    }
    const lookup = await resolved;
    return lookup(header, token);
  };
}

export function discoveryUrlOf(issuer: string, kind: TrustedIssuerConfig['discovery']): string {
  const url = new URL(issuer);
  const path = url.pathname.replace(/\/$/, '');
  if (kind === 'openid-configuration') return `${url.origin}${path}/.well-known/openid-configuration`;
  return `${url.origin}/.well-known/oauth-authorization-server${path}`;
}

function isFetchable(value: string): boolean {
  const url = URL.parse(value);
  if (!url) return false;
  return url.protocol === 'https:' || (url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname));
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

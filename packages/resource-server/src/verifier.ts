/**
 * `createVerifier`: configuration, and the order in which a request's access token is checked.
 *
 * @module
 */
import { DEFAULT_ALGORITHMS, isSupportedAlgorithm, SUPPORTED_ALGORITHMS, type SupportedAlgorithm } from './algorithms.js';
import { parseAuthorization, type Credentials } from './authorization_header.js';
import { checkBinding, type BindingKind } from './binding.js';
import type { ClientCertificateInput } from './certificate.js';
import type { DpopNonceSource } from './dpop_nonce.js';
import { createDpopKeyCache, type DpopRules } from './dpop_proof.js';
import { VerifierError, type AuthScheme } from './errors.js';
import type { FetchJsonOptions, FetchLike } from './fetch_json.js';
import { createIssuerMetadataSource, isHttpUrl } from './issuer_metadata.js';
import { createJwksCache, type JsonWebKeySet } from './jwks_cache.js';
import { createMemoryReplayStore, type ReplayStore } from './replay_store.js';
import { createHeaderMemo } from './header_memo.js';
import { createSignatureMemo } from './signature_memo.js';
import { createRevocationChecker, type RevocationChecker, type RevocationOptions } from './revocation.js';
import { acceptedUse, refusedUse, type UseEvent, type UseRecorder } from './use_event.js';
import {
  checkAccessTokenClaims,
  checkScopes,
  verifyAccessTokenJwt,
  type AccessTokenClaims,
  type AccessTokenRules,
} from './verify_access_token.js';

/** DPoP settings (RFC 9449). */
export interface DpopOptions {
  /** How old a proof may be (seconds, default 300), on top of the clock tolerance. */
  readonly maxAgeSeconds?: number;
  /** Where used proof `jti`s are recorded; default: a per-process in-memory store. */
  readonly replayStore?: ReplayStore;
  /** Require server-provided nonces (RFC 9449 §9); off by default. */
  readonly nonce?: DpopNonceSource;
  /** Algorithms accepted for proofs; default: the verifier's `algorithms`. */
  readonly algorithms?: readonly SupportedAlgorithm[];
}

/** Options of {@link createVerifier}. */
export interface VerifierOptions {
  /** The issuer identifier, compared exactly with `iss`. */
  readonly issuer: string;
  /** This API's resource identifier, compared exactly with `aud` (which must be a single string). */
  readonly audience: string;
  /** The issuer's JWKS URL; when neither this nor `jwks` is given it is discovered from the issuer metadata. */
  readonly jwksUri?: string;
  /** A local JWKS (no network at all). */
  readonly jwks?: JsonWebKeySet;
  /** Accepted JWS algorithms (default `['ES256', 'PS256', 'EdDSA', 'Ed25519']`); `none` and HMAC cannot be configured. */
  readonly algorithms?: readonly SupportedAlgorithm[];
  /** Leeway for `exp`, `nbf`, `iat` and DPoP `iat` (seconds, default 5). */
  readonly clockToleranceSeconds?: number;
  /** Largest accepted access token and DPoP proof, checked before any decoding (default 8192). */
  readonly maxTokenBytes?: number;
  /**
   * How many distinct tokens whose signature verified are remembered, so that a token presented
   * again skips the signature check (default 1000; 0 checks every signature on every request). Each
   * presentation still has its claims, expiry, binding, revocation and scopes checked, and a key
   * the issuer no longer publishes verifies nothing (signature_memo.ts).
   */
  readonly signatureCacheSize?: number;
  /** Accept tokens without `cnf` (legacy resources only; default false). */
  readonly allowBearer?: boolean;
  /** Least time between two JWKS fetches caused by unknown `kid`s (default 30 000 ms). */
  readonly jwksCooldownMs?: number;
  /** How long a fetched JWKS is used before it is fetched again (default 600 000 ms). */
  readonly jwksMaxAgeMs?: number;
  /** Timeout of each request to the issuer (default 5 000 ms). */
  readonly httpTimeoutMs?: number;
  /** DPoP settings, or `false` to refuse DPoP-bound tokens (default: enabled with defaults). */
  readonly dpop?: DpopOptions | false;
  /** Revocation check (off by default). */
  readonly revocation?: RevocationOptions;
  /** The `fetch` used for metadata, JWKS and introspection (default: the global `fetch`). */
  readonly fetch?: FetchLike;
  /**
   * Where every outcome is reported (docs/use-reports.md): accepted (token id, client, the route's
   * required scopes, binding) and refused (reason, code, and what the token claimed). Usually
   * {@link createUseReporter}; it is called on the request path and must neither block nor throw.
   */
  readonly useReporter?: UseRecorder;
  /** Clock in epoch milliseconds (for tests). */
  readonly now?: () => number;
}

/**
 * How long a verifier keeps the issuer's JWKS by default (`jwksMaxAgeMs`). The issuer publishes a new
 * signing key at least this long before signing with it (server config `signing.verifierJwksMaxAge`).
 */
export const DEFAULT_JWKS_MAX_AGE_MS = 600_000;

/** The request to verify; `headers` are lower-case names as in `node:http`. */
export interface VerifyRequest {
  /** The HTTP method, compared with DPoP `htm`. */
  readonly method: string;
  /** The absolute request URL as the client addressed it, compared with DPoP `htu`. */
  readonly url: string;
  readonly headers: {
    readonly authorization?: string | readonly string[];
    readonly dpop?: string | readonly string[];
    readonly [name: string]: string | readonly string[] | undefined;
  };
  /** The TLS client certificate (DER or PEM) or its `x5t#S256` thumbprint, when one was presented. */
  readonly clientCertificate?: ClientCertificateInput;
  /** Scopes this request needs; all must be granted (403 `insufficient_scope` otherwise). */
  readonly requiredScopes?: readonly string[];
}

/** The effective configuration, for middleware, challenges and metadata. */
export interface VerifierSettings {
  readonly issuer: string;
  readonly audience: string;
  readonly algorithms: readonly SupportedAlgorithm[];
  /** DPoP proof algorithms, or `undefined` when DPoP is disabled. */
  readonly dpopAlgorithms: readonly SupportedAlgorithm[] | undefined;
  readonly allowBearer: boolean;
  readonly maxTokenBytes: number;
}

/** A configured verifier. */
export interface Verifier {
  /**
   * Verifies the request's access token and its binding; resolves the validated claims or rejects
   * with a {@link VerifierError} (and nothing else).
   */
  verify(request: VerifyRequest): Promise<AccessTokenClaims>;
  /** Like {@link Verifier.verify}, and also tells which binding was verified. */
  verifyWithBinding(request: VerifyRequest): Promise<{ claims: AccessTokenClaims; binding: BindingKind }>;
  readonly settings: VerifierSettings;
}

const MAX_METADATA_BYTES = 512 * 1024;
/** Tokens remembered by default: a busy API's live tokens, at most ~8 MB at the largest token size. */
const DEFAULT_SIGNATURE_CACHE_SIZE = 1000;

/**
 * Creates a verifier for one API (`audience`) and one issuer. Throws `TypeError` for an invalid
 * configuration, naming the bad option.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const settings = validateOptions(options);
  const now = options.now ?? Date.now;
  const http: FetchJsonOptions = {
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    timeoutMs: options.httpTimeoutMs ?? 5000,
    maxBytes: MAX_METADATA_BYTES,
  };
  const cooldownMs = options.jwksCooldownMs ?? 30_000;
  const issuerMetadata = createIssuerMetadataSource({ ...http, issuer: settings.issuer, retryAfterMs: Math.min(cooldownMs, 5000), now });
  const keys = createJwksCache({
    jwks: options.jwks,
    jwksUri: options.jwks !== undefined ? undefined : options.jwksUri !== undefined ? async () => options.jwksUri as string : () => discoverJwksUri(issuerMetadata),
    http,
    cooldownMs,
    maxAgeMs: options.jwksMaxAgeMs ?? DEFAULT_JWKS_MAX_AGE_MS,
    now,
  });
  const rules: AccessTokenRules = {
    issuer: settings.issuer,
    audience: settings.audience,
    clockToleranceSeconds: options.clockToleranceSeconds ?? 5,
    jws: {
      maxBytes: settings.maxTokenBytes,
      algorithms: new Set(settings.algorithms),
      memo: createSignatureMemo(options.signatureCacheSize ?? DEFAULT_SIGNATURE_CACHE_SIZE),
      headers: createHeaderMemo(),
    },
  };
  const dpop = dpopRules(options.dpop, settings, rules, now);
  const revocation: RevocationChecker | undefined =
    options.revocation === undefined
      ? undefined
      : createRevocationChecker(options.revocation, {
          http,
          now,
          discoverEndpoint: async () => (await issuerMetadata()).introspection_endpoint,
        });

  const report = (event: () => UseEvent) => {
    if (options.useReporter === undefined) return;
    try {
      options.useReporter.record(event());
    } catch {
      // A reporter's failure is its own (it counts what it drops); the request's answer stands.
    }
  };

  async function verifyWithBinding(request: VerifyRequest): Promise<{ claims: AccessTokenClaims; binding: BindingKind }> {
    let credentials: Credentials | undefined;
    let claims: AccessTokenClaims | undefined;
    try {
      checkRequestShape(request);
      credentials = parseAuthorization(request.headers.authorization, settings.maxTokenBytes);
      const at = now();
      const payload = await verifyAccessTokenJwt(credentials.token, rules, keys, at);
      const seconds = at / 1000;
      claims = checkAccessTokenClaims(payload, rules, seconds);
      // The binding is checked before scopes: a caller who cannot prove possession learns nothing
      // about what the token would have allowed.
      const binding = await checkBinding(
        claims,
        credentials,
        { method: request.method, url: request.url, dpop: request.headers.dpop, clientCertificate: request.clientCertificate },
        { allowBearer: settings.allowBearer, dpop },
        seconds,
      );
      if (revocation !== undefined) await revocation.check(credentials.token, claims);
      checkScopes(claims, request.requiredScopes);
      report(() => acceptedUse(claims!, binding, request.requiredScopes, now()));
      return { claims, binding };
    } catch (err) {
      const error = asVerifierError(err, challengeScheme(credentials, claims));
      const requiredScopes = Array.isArray(request?.requiredScopes) ? request.requiredScopes : undefined;
      report(() => refusedUse(error, { token: credentials?.token, audience: settings.audience, requiredScopes, occurredAt: now() }));
      throw error;
    }
  }

  return {
    settings,
    verifyWithBinding,
    async verify(request) {
      return (await verifyWithBinding(request)).claims;
    },
  };
}

function dpopRules(options: DpopOptions | false | undefined, settings: VerifierSettings, rules: AccessTokenRules, now: () => number): DpopRules | undefined {
  if (options === false || settings.dpopAlgorithms === undefined) return undefined;
  const maxAgeSeconds = options?.maxAgeSeconds ?? 300;
  if (!(maxAgeSeconds > 0)) throw new TypeError('dpop.maxAgeSeconds must be positive');
  return {
    algorithms: new Set(settings.dpopAlgorithms),
    maxAgeSeconds,
    clockToleranceSeconds: rules.clockToleranceSeconds,
    maxProofBytes: rules.jws.maxBytes,
    replayStore: options?.replayStore ?? createMemoryReplayStore({ now }),
    nonce: options?.nonce,
    keyCache: createDpopKeyCache(),
  };
}

async function discoverJwksUri(issuerMetadata: () => Promise<{ jwks_uri?: string }>): Promise<string> {
  const { jwks_uri: uri } = await issuerMetadata();
  if (uri === undefined) throw new Error('the issuer metadata has no jwks_uri');
  return uri;
}

/**
 * RFC 9449 §7.1: errors about a DPoP-bound token, or a request that used the DPoP scheme, are
 * answered with the DPoP challenge; everything else with the Bearer challenge.
 */
function challengeScheme(credentials: Credentials | undefined, claims: AccessTokenClaims | undefined): AuthScheme | undefined {
  if (credentials === undefined) return undefined;
  if (credentials.scheme === 'DPoP' || claims?.cnf?.jkt !== undefined) return 'DPoP';
  return 'Bearer';
}

function asVerifierError(err: unknown, scheme: AuthScheme | undefined): VerifierError {
  const error = err instanceof VerifierError ? err : new VerifierError('ERR_INTERNAL', 'the request could not be verified', { cause: err });
  error.scheme ??= scheme;
  return error;
}

function checkRequestShape(request: VerifyRequest): void {
  if (
    typeof request !== 'object' ||
    request === null ||
    typeof request.method !== 'string' ||
    typeof request.url !== 'string' ||
    typeof request.headers !== 'object' ||
    request.headers === null
  ) {
    throw new VerifierError('ERR_REQUEST_INVALID', 'request must have method, url and headers');
  }
}

function validateOptions(options: VerifierOptions): VerifierSettings {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (!isHttpUrl(options.issuer)) throw new TypeError('issuer must be an absolute http(s) URL');
  if (typeof options.audience !== 'string' || options.audience.length === 0) throw new TypeError('audience must be a non-empty string');
  if (options.jwks !== undefined && options.jwksUri !== undefined) throw new TypeError('give jwks or jwksUri, not both');
  if (options.jwks !== undefined && !Array.isArray(options.jwks.keys)) throw new TypeError('jwks must be a JWK Set with a keys array');
  if (options.jwksUri !== undefined && !isHttpUrl(options.jwksUri)) throw new TypeError('jwksUri must be an absolute http(s) URL');
  const algorithms = validateAlgorithms(options.algorithms ?? DEFAULT_ALGORITHMS, 'algorithms');
  const dpopAlgorithms = options.dpop === false ? undefined : validateAlgorithms(options.dpop?.algorithms ?? algorithms, 'dpop.algorithms');
  for (const name of ['clockToleranceSeconds', 'maxTokenBytes', 'jwksCooldownMs', 'jwksMaxAgeMs', 'httpTimeoutMs'] as const) {
    const value = options[name];
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
      throw new TypeError(`${name} must be a non-negative number`);
    }
  }
  const { signatureCacheSize } = options;
  if (signatureCacheSize !== undefined && !(Number.isSafeInteger(signatureCacheSize) && signatureCacheSize >= 0)) {
    throw new TypeError('signatureCacheSize must be a non-negative integer');
  }
  return Object.freeze({
    issuer: options.issuer,
    audience: options.audience,
    algorithms,
    dpopAlgorithms,
    allowBearer: options.allowBearer === true,
    maxTokenBytes: options.maxTokenBytes ?? 8192,
  });
}

function validateAlgorithms(algorithms: readonly string[], name: string): readonly SupportedAlgorithm[] {
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw new TypeError(`${name} must be a non-empty array`);
  for (const alg of algorithms) {
    if (!isSupportedAlgorithm(alg)) {
      throw new TypeError(`${name}: ${String(alg)} is not supported (supported: ${SUPPORTED_ALGORITHMS.join(', ')}; none and HMAC never are)`);
    }
  }
  return Object.freeze([...new Set(algorithms as SupportedAlgorithm[])]);
}

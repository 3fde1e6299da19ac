/**
 * Discovery of the issuer's metadata (RFC 8414, then OpenID Connect Discovery 1.0), for `jwks_uri`
 * and `introspection_endpoint` when they are not configured.
 *
 * @module
 */
import type { JsonObject } from './compact_jws.js';
import { VerifierError } from './errors.js';
import { fetchJson, type FetchJsonOptions } from './fetch_json.js';
import { singleFlight } from './single_flight.js';

/** Metadata members the verifier uses. */
export interface IssuerMetadata {
  readonly issuer: string;
  readonly jwks_uri?: string;
  readonly introspection_endpoint?: string;
  readonly [member: string]: unknown;
}

/** Options of {@link createIssuerMetadataSource}. */
export interface IssuerMetadataSourceOptions extends FetchJsonOptions {
  readonly issuer: string;
  /** After a failure, further attempts wait this long, so that an outage is not amplified. */
  readonly retryAfterMs: number;
  readonly now: () => number;
}

/**
 * The well-known URLs to try, in order: RFC 8414 §3.1 inserts the well-known segment between host
 * and path; the form appended to the issuer is what OpenID Connect Discovery 1.0 §4 uses (and what
 * many servers also answer for `oauth-authorization-server`).
 */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  const appended = issuer.replace(/\/$/, '');
  const candidates = [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    `${appended}/.well-known/oauth-authorization-server`,
    `${appended}/.well-known/openid-configuration`,
  ];
  return [...new Set(candidates)];
}

/**
 * Returns a function that resolves the issuer's metadata: fetched once, then cached for the life of
 * the verifier; concurrent callers share one request.
 */
export function createIssuerMetadataSource(options: IssuerMetadataSourceOptions): () => Promise<IssuerMetadata> {
  let cached: IssuerMetadata | undefined;
  let failedAt = -Infinity;
  let lastError: unknown;
  const discovery = singleFlight(() =>
    discover(options).then(
      (metadata) => (cached = metadata),
      (err: unknown) => {
        failedAt = options.now();
        lastError = err;
        throw new VerifierError('ERR_DISCOVERY_FAILED', 'authorization server metadata is unavailable', { cause: err });
      },
    ),
  );

  return async function issuerMetadata(): Promise<IssuerMetadata> {
    if (cached !== undefined) return cached;
    if (!discovery.running() && options.now() - failedAt < options.retryAfterMs) {
      throw new VerifierError('ERR_DISCOVERY_FAILED', 'authorization server metadata is unavailable', { cause: lastError });
    }
    return discovery.run();
  };
}

async function discover(options: IssuerMetadataSourceOptions): Promise<IssuerMetadata> {
  const errors: unknown[] = [];
  for (const url of discoveryUrls(options.issuer)) {
    let json: JsonObject;
    try {
      json = await fetchJson(url, { method: 'GET' }, options);
    } catch (err) {
      errors.push(err);
      continue;
    }
    return validateMetadata(json, options.issuer, url);
  }
  throw new AggregateError(errors, `no metadata found for issuer ${options.issuer}`);
}

function validateMetadata(json: JsonObject, issuer: string, url: string): IssuerMetadata {
  // RFC 8414 §3.3: the issuer in the document must be identical to the one it was discovered from,
  // or a metadata document of another server could substitute its keys.
  if (json.issuer !== issuer) throw new Error(`metadata at ${url} names issuer ${String(json.issuer)}, not ${issuer}`);
  for (const member of ['jwks_uri', 'introspection_endpoint'] as const) {
    const value = json[member];
    if (value !== undefined && !isHttpUrl(value)) throw new Error(`metadata at ${url} has an invalid ${member}`);
  }
  return json as IssuerMetadata;
}

/** True for an absolute `http:` or `https:` URL. */
export function isHttpUrl(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  try {
    const { protocol } = new URL(value);
    return protocol === 'https:' || protocol === 'http:';
  } catch {
    return false;
  }
}

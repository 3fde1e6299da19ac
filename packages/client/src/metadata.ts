/**
 * Authorization server metadata (RFC 8414): read from the issuer's well-known URL, or given, and
 * checked before anything is sent to the endpoints it names.
 *
 * @module
 */
import type { Dispatcher } from 'undici';
import { ClientError } from './errors.js';
import { readJsonObject } from './http_json.js';
import type { FetchFunction } from './transport.js';

/** The metadata members the client uses (any others are kept). */
export interface AuthorizationServerMetadata {
  readonly issuer: string;
  readonly token_endpoint: string;
  readonly token_endpoint_auth_methods_supported?: readonly string[];
  readonly dpop_signing_alg_values_supported?: readonly string[];
  /** RFC 8705 §5: endpoints to use when presenting a client certificate. */
  readonly mtls_endpoint_aliases?: { readonly token_endpoint?: string; readonly [name: string]: unknown };
  readonly [member: string]: unknown;
}

/** How discovery talks to the issuer. */
export interface DiscoveryTransport {
  readonly fetch: FetchFunction;
  readonly dispatcher: Dispatcher;
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

/**
 * The well-known URLs, in order: RFC 8414 §3.1 inserts `/.well-known/oauth-authorization-server`
 * between the host and the issuer's path; OpenID Connect Discovery 1.0 §4 appends
 * `/.well-known/openid-configuration` to the issuer.
 */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return [...new Set([
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
  ])];
}

/** Fetches and checks the metadata of `issuer`: the first well-known URL that answers 200 with a JSON object. */
export async function discoverMetadata(issuer: string, transport: DiscoveryTransport): Promise<AuthorizationServerMetadata> {
  const failures: string[] = [];
  for (const url of discoveryUrls(issuer)) {
    let response;
    try {
      response = await transport.fetch(url, {
        headers: { accept: 'application/json' },
        dispatcher: transport.dispatcher,
        redirect: 'manual',
        signal: AbortSignal.timeout(transport.timeoutMs),
      });
    } catch (cause) {
      throw new ClientError('ERR_DISCOVERY_FAILED', `the metadata of ${issuer} could not be read from ${url}`, { cause });
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      failures.push(`${url} answered ${response.status}`);
      continue;
    }
    const answer = await readJsonObject(response, transport.maxBytes);
    if (answer.kind !== 'object') throw new ClientError('ERR_DISCOVERY_FAILED', `${url} did not answer a JSON object`);
    return checkMetadata(answer.body, issuer);
  }
  throw new ClientError('ERR_DISCOVERY_FAILED', `no metadata for ${issuer}: ${failures.join('; ')}`);
}

/** Checks metadata read or given: the issuer it names, and HTTPS endpoints. */
export function checkMetadata(metadata: Record<string, unknown>, expectedIssuer: string | undefined): AuthorizationServerMetadata {
  const issuer = metadata.issuer;
  if (typeof issuer !== 'string' || !isHttpsUrl(issuer)) throw new ClientError('ERR_DISCOVERY_FAILED', 'the metadata has no https issuer');
  // RFC 8414 §3.3: identical to the issuer the metadata was asked for (defends against mix-up).
  if (expectedIssuer !== undefined && issuer !== expectedIssuer) {
    throw new ClientError('ERR_DISCOVERY_FAILED', `the metadata names issuer ${issuer}, not ${expectedIssuer}`);
  }
  if (typeof metadata.token_endpoint !== 'string' || !isHttpsUrl(metadata.token_endpoint)) {
    throw new ClientError('ERR_DISCOVERY_FAILED', `the metadata of ${issuer} has no https token_endpoint`);
  }
  const aliases = metadata.mtls_endpoint_aliases;
  if (aliases !== undefined) {
    const alias = typeof aliases === 'object' && aliases !== null ? (aliases as Record<string, unknown>).token_endpoint : null;
    if (alias !== undefined && (typeof alias !== 'string' || !isHttpsUrl(alias))) {
      throw new ClientError('ERR_DISCOVERY_FAILED', `the metadata of ${issuer} has an mtls_endpoint_aliases.token_endpoint that is not an https URL`);
    }
  }
  for (const list of ['token_endpoint_auth_methods_supported', 'dpop_signing_alg_values_supported']) {
    const value = metadata[list];
    if (value !== undefined && !(Array.isArray(value) && value.every((item) => typeof item === 'string'))) {
      throw new ClientError('ERR_DISCOVERY_FAILED', `the metadata of ${issuer} has a ${list} that is not a list of strings`);
    }
  }
  return metadata as AuthorizationServerMetadata;
}

/** RFC 8705 §5: a client presenting a certificate uses the mTLS alias of the token endpoint, if there is one. */
export function tokenEndpointOf(metadata: AuthorizationServerMetadata, presentsCertificate: boolean): string {
  const alias = presentsCertificate ? metadata.mtls_endpoint_aliases?.token_endpoint : undefined;
  return typeof alias === 'string' ? alias : metadata.token_endpoint;
}

function isHttpsUrl(value: string): boolean {
  const url = URL.parse(value);
  return url !== null && url.protocol === 'https:' && url.hash === '';
}

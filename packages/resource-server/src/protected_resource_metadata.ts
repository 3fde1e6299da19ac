/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells clients which
 * authorization server issues tokens for this API and how they must be bound.
 *
 * @module
 */
import type { VerifierSettings } from './verifier.js';

/** What the metadata document says beyond what the verifier configuration implies. */
export interface ProtectedResourceMetadataOptions {
  /** `scopes_supported` (RFC 9728 §2). */
  readonly scopesSupported?: readonly string[];
  /** `resource_name`, human-readable. */
  readonly resourceName?: string;
  /** `resource_documentation` URL. */
  readonly resourceDocumentation?: string;
  /** `tls_client_certificate_bound_access_tokens` (default true: certificate-bound tokens are verified). */
  readonly tlsClientCertificateBoundAccessTokens?: boolean;
  /** `dpop_bound_access_tokens_required` (default false: certificate-bound tokens are accepted too). */
  readonly dpopBoundAccessTokensRequired?: boolean;
  /** Where the document is served, when it cannot be derived from the audience (RFC 9728 §3.1). */
  readonly url?: string;
}

/** The RFC 9728 §2 document. */
export interface ProtectedResourceMetadata {
  readonly resource: string;
  readonly authorization_servers: readonly string[];
  readonly scopes_supported?: readonly string[];
  readonly bearer_methods_supported: readonly string[];
  readonly dpop_signing_alg_values_supported?: readonly string[];
  readonly tls_client_certificate_bound_access_tokens: boolean;
  readonly dpop_bound_access_tokens_required: boolean;
  readonly resource_name?: string;
  readonly resource_documentation?: string;
}

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/**
 * RFC 9728 §3.1: the metadata URL of a resource identifier inserts the well-known segment between
 * the host and the path (`https://api.example/v1` → `https://api.example/.well-known/oauth-protected-resource/v1`).
 * Returns `undefined` when the resource is not an `https`/`http` URL without query or fragment.
 */
export function protectedResourceMetadataUrl(resource: string): string | undefined {
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search !== '' || url.hash !== '') return undefined;
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}${WELL_KNOWN}${path}`;
}

/** Builds the metadata document from the verifier's settings and the extra options. */
export function buildProtectedResourceMetadata(settings: VerifierSettings, options: ProtectedResourceMetadataOptions = {}): ProtectedResourceMetadata {
  return {
    resource: settings.audience,
    authorization_servers: [settings.issuer],
    ...(options.scopesSupported === undefined ? {} : { scopes_supported: [...options.scopesSupported] }),
    // RFC 6750 §2.1 only: tokens in bodies or query strings are not accepted.
    bearer_methods_supported: ['header'],
    ...(settings.dpopAlgorithms === undefined ? {} : { dpop_signing_alg_values_supported: [...settings.dpopAlgorithms] }),
    tls_client_certificate_bound_access_tokens: options.tlsClientCertificateBoundAccessTokens ?? true,
    dpop_bound_access_tokens_required: options.dpopBoundAccessTokensRequired ?? false,
    ...(options.resourceName === undefined ? {} : { resource_name: options.resourceName }),
    ...(options.resourceDocumentation === undefined ? {} : { resource_documentation: options.resourceDocumentation }),
  };
}

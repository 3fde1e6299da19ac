/**
 * A Tether running elsewhere (`tether dev`, `tether start`), used the way the harness uses its own:
 * its endpoints from discovery (RFC 8414), tokens for one client whose credentials the caller holds,
 * and the catalogue of bad tokens for one API.
 */
import { fetch } from 'undici';
import { createEphemeralPki } from '../keys/dev_pki.js';
import type { AgentPool } from './agents.js';
import type { TetherSigningKey } from './signing_key.js';
import { createTokenClient, scopeList, type AccessTokenRequest, type ClientCredentials, type TokenClient, type TokenEndpoints } from './token_client.js';
import { badTokenCatalogue, type BadTokenCase } from './token_factory.js';

/** How to reach a running Tether as one client. */
export interface RemoteTetherOptions {
  /** The issuer URL; its metadata is read from `/.well-known/oauth-authorization-server`. */
  readonly issuer: string;
  /** PEM bundle Tether's TLS certificate chains to (default: the agent pool's CA, else the system's). */
  readonly ca?: string;
  readonly credentials: ClientCredentials;
  readonly agents: AgentPool;
}

/** The catalogue request against a running Tether. */
export interface RemoteBadTokenRequest extends AccessTokenRequest {
  readonly resource: string;
  /** Scopes the API needs (default: the requested `scope`). */
  readonly requiredScopes?: readonly string[];
  /** Another resource registered at this Tether, for `other-resource-aud`. */
  readonly otherResource?: string;
  /**
   * Tether's current signing key (from its database: `loadTetherSigningKey`); without it the checks
   * that need Tether's signature are reported as skipped.
   */
  readonly signingKey?: TetherSigningKey;
  /** Why there is no signing key (shown for the skipped checks). */
  readonly signingKeyUnavailable?: string;
}

/** Reads the issuer's metadata and returns a token client for `options.credentials`. */
export async function connectToTether(options: RemoteTetherOptions): Promise<TokenClient> {
  const metadataUrl = new URL('/.well-known/oauth-authorization-server', options.issuer);
  const response = await fetch(metadataUrl, { dispatcher: options.agents.agentFor(options.credentials.certificate, options.ca) });
  if (!response.ok) throw new Error(`${metadataUrl} answered ${response.status}`);
  const metadata = (await response.json()) as Record<string, unknown>;
  // RFC 8705 §5: clients that authenticate with a certificate use the mTLS aliases when published.
  const aliases = (options.credentials.certificate ? metadata.mtls_endpoint_aliases : undefined) as Record<string, unknown> | undefined;
  const endpoint = (name: string) => String(aliases?.[name] ?? metadata[name] ?? '');
  const endpoints: TokenEndpoints = {
    issuer: options.issuer,
    tokenEndpoint: endpoint('token_endpoint'),
    revocationEndpoint: endpoint('revocation_endpoint'),
    ca: options.ca,
  };
  if (!endpoints.tokenEndpoint) throw new Error(`${metadataUrl} names no token_endpoint`);
  return createTokenClient(endpoints, options.credentials, options.agents);
}

/** The catalogue for one API request, with tokens from a running Tether. */
export async function remoteBadTokens(client: TokenClient, request: RemoteBadTokenRequest): Promise<BadTokenCase[]> {
  const obtain = () => client.clientCredentials({ resource: request.resource, scope: request.scope });
  // Any certificate other than the client's will do for `cnf-other-certificate`.
  const [valid, other] = await Promise.all([obtain(), createEphemeralPki({ clientNames: ['another-client'] })]);
  return badTokenCatalogue({
    valid,
    obtain,
    revoke: (token) => client.revoke(token.accessToken),
    signingKey: request.signingKey,
    signingKeyUnavailable: request.signingKeyUnavailable,
    otherResource: request.otherResource,
    requiredScopes: scopeList(request.requiredScopes ?? request.scope),
    otherCertificateThumbprint: other.clients['another-client']!.thumbprint,
  });
}

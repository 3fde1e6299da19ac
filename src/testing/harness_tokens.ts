/**
 * What a running harness offers a test on top of the server: real tokens through the real endpoints
 * for a named client, fetch wrappers that present them, and the catalogue of tokens that are wrong
 * in exactly one way.
 */
import type { Knex } from 'knex';
import type { TetherConfig } from '../config/schema.js';
import { issueClientCertificate, type Pki } from '../keys/dev_pki.js';
import type { AgentPool } from './agents.js';
import { configuredClients, type CredentialOverrides } from './configured_clients.js';
import { runProbe, type ProbeReport, type ProbeTarget } from './probe.js';
import { runProbeThrough, type ThroughReport } from './probe_through.js';
import { loadTetherSigningKey, type TetherSigningKey } from './signing_key.js';
import { createTokenClient, scopeList, type IssuedAccessToken, type TokenClient, type TokenEndpoints } from './token_client.js';
import { badTokenCatalogue, type BadTokenCase } from './token_factory.js';
import { createTokenFetch, type TokenFetch, type TokenFetchOptions } from './token_fetch.js';

/** A token request for a client named in the configuration. */
export interface HarnessTokenRequest extends CredentialOverrides {
  /** The client id. */
  readonly client: string;
  /** RFC 8707 resource (default: the client's `defaultResource`). */
  readonly resource?: string;
  readonly scope?: string | readonly string[];
}

/** An exchange (RFC 8693) by a configured client of a token it received. */
export interface HarnessExchangeRequest extends HarnessTokenRequest {
  readonly subjectToken: string | IssuedAccessToken;
  readonly actorToken?: string | IssuedAccessToken;
}

/** The request a catalogue of bad tokens is made for. */
export interface BadTokenRequest extends HarnessTokenRequest {
  /** The resource is required here: the catalogue is about one API. */
  readonly resource: string;
  /** Scopes the API needs for the request (default: the requested `scope`). */
  readonly requiredScopes?: readonly string[];
  /** Another registered resource for `other-resource-aud` (default: the first other JWT resource in the configuration). */
  readonly otherResource?: string;
}

/** A probe of one API operation with tokens of this Tether. */
export interface HarnessProbeRequest extends BadTokenRequest, ProbeTarget {
  /** Only these checks. */
  readonly only?: readonly string[];
  /** Not these checks (reported as skipped). */
  readonly skip?: readonly string[];
}

/** Token helpers of one running Tether. */
export interface HarnessTokens {
  /** A token from `client_credentials` through the token endpoint. */
  token(request: HarnessTokenRequest): Promise<IssuedAccessToken>;
  /** A token from token exchange through the token endpoint. */
  exchange(request: HarnessExchangeRequest): Promise<IssuedAccessToken>;
  /** Revokes a token at the revocation endpoint, as the client it was issued to. */
  revoke(token: IssuedAccessToken): Promise<void>;
  /** A token endpoint client for a configured client (its certificate, secret and a DPoP key). */
  clientFor(clientId: string, overrides?: CredentialOverrides): Promise<TokenClient>;
  /** A `fetch` that presents `token` (certificate on the connection, DPoP proof per request). */
  fetchWith(token: IssuedAccessToken, options?: TokenFetchOptions): TokenFetch;
  /** Tether's current signing key, read from its database. */
  signingKey(): Promise<TetherSigningKey>;
  /** The catalogue of bad tokens for one valid request (see `token_factory.ts`). */
  badTokens(request: BadTokenRequest): Promise<BadTokenCase[]>;
  /**
   * Runs the catalogue against `request.url` and reports each check (see `probe.ts`). The API's TLS
   * certificate is trusted if it chains to `request.ca`, else to the harness CA.
   */
  probe(request: HarnessProbeRequest): Promise<ProbeReport>;
  /**
   * For an API behind a gateway: the catalogue through the gateway (`request.url`) and straight at
   * the upstream (`request.upstreamUrl`), and who enforces each check (probe_through.ts).
   */
  probeThrough(request: HarnessProbeRequest & { readonly upstreamUrl: string; readonly upstreamCa?: string }): Promise<ThroughReport>;
}

/** What the helpers need from the running instance. */
export interface HarnessTokenContext {
  readonly config: TetherConfig;
  readonly pki: Pki;
  readonly knex: Knex;
  readonly endpoints: TokenEndpoints;
  readonly agents: AgentPool;
}

/** Builds the helpers; every connection they open comes from `context.agents`. */
export function harnessTokens(context: HarnessTokenContext): HarnessTokens {
  const { config, pki, knex, endpoints, agents } = context;
  const clients = configuredClients(config, pki);

  async function clientFor(clientId: string, overrides?: CredentialOverrides): Promise<TokenClient> {
    return createTokenClient(endpoints, await clients.credentialsFor(clientId, overrides), agents);
  }

  async function token(request: HarnessTokenRequest): Promise<IssuedAccessToken> {
    return (await clientFor(request.client, request)).clientCredentials({ resource: request.resource, scope: request.scope });
  }

  const signingKey = () => loadTetherSigningKey(knex, { algorithm: config.signing.algorithm, encryptionSecret: config.signing.encryptionSecret });

  async function badTokens(request: BadTokenRequest): Promise<BadTokenCase[]> {
    // One client (one DPoP key) for the valid token and the fresh ones, so that they are bound alike.
    const holder = await clientFor(request.client, request);
    const obtain = () => holder.clientCredentials({ resource: request.resource, scope: request.scope });
    const [valid, key, other] = await Promise.all([obtain(), signingKey(), issueClientCertificate(pki, 'another-client')]);
    return badTokenCatalogue({
      valid,
      obtain,
      revoke: (issued) => holder.revoke(issued.accessToken),
      signingKey: key,
      otherResource: request.otherResource ?? otherJwtResource(config, request.resource),
      requiredScopes: request.requiredScopes ?? scopeList(request.scope ?? valid.scope),
      otherCertificateThumbprint: other.thumbprint,
    });
  }

  return {
    token,
    clientFor,
    async exchange(request) {
      const value = (token: string | IssuedAccessToken) => (typeof token === 'string' ? token : token.accessToken);
      return (await clientFor(request.client, request)).exchange({
        subjectToken: value(request.subjectToken),
        actorToken: request.actorToken === undefined ? undefined : value(request.actorToken),
        resource: request.resource,
        scope: request.scope,
      });
    },
    async revoke(issued) {
      await createTokenClient(endpoints, issued.credentials, agents).revoke(issued.accessToken);
    },
    fetchWith(issued, options) {
      return createTokenFetch(issued, agents, options);
    },
    signingKey,
    badTokens,
    async probe(request) {
      return runProbe({ ...request, cases: await badTokens(request), agents });
    },
    async probeThrough(request) {
      return runProbeThrough({ ...request, cases: await badTokens(request), agents });
    },
  };
}

/** A JWT resource of `config` other than `resource` (for `other-resource-aud`). */
export function otherJwtResource(config: TetherConfig, resource: string): string | undefined {
  return config.resources.find((candidate) => candidate.uri !== resource && candidate.format === 'jwt')?.uri;
}

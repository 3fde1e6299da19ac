/**
 * A client of Tether's token endpoints, the way a real workload calls them: `client_credentials`
 * (RFC 6749 §4.4) and token exchange (RFC 8693) with RFC 8707 `resource`, revocation (RFC 7009),
 * authenticated by a TLS client certificate or a client secret, with a DPoP proof (RFC 9449) when
 * the client's tokens are DPoP-bound.
 */
import { decodeJwt, type JWTPayload } from 'jose';
import { fetch } from 'undici';
import { scopesOf } from '../oauth/scope.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../oauth/token_exchange_urns.js';
import type { AgentPool, PresentedCertificate } from './agents.js';
import { dpopProof, type DpopKey } from './dpop.js';

/** How one client authenticates and proves possession. */
export interface ClientCredentials {
  readonly clientId: string;
  /**
   * Presented on every TLS connection of this client: `tls_client_auth` /
   * `self_signed_tls_client_auth`, and the key of certificate-bound tokens (RFC 8705).
   */
  readonly certificate?: PresentedCertificate & { readonly thumbprint?: string };
  /** `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1). */
  readonly secret?: { readonly value: string; readonly method: 'client_secret_basic' | 'client_secret_post' };
  /** DPoP-bound tokens (RFC 9449): the key every proof is signed with. */
  readonly dpopKey?: DpopKey;
}

/** Where the token, revocation and introspection endpoints are, and which CA their TLS certificate chains to. */
export interface TokenEndpoints {
  readonly issuer: string;
  readonly tokenEndpoint: string;
  readonly revocationEndpoint: string;
  /** PEM bundle to trust for the endpoints' TLS (default: the agent pool's CA). */
  readonly ca?: string;
}

/** What to ask for. */
export interface AccessTokenRequest {
  /** RFC 8707 resource indicator; omitted when the client has a default resource. */
  readonly resource?: string;
  /** Scopes, space-separated or as a list. */
  readonly scope?: string | readonly string[];
}

/** RFC 8693 §2.1: the token to exchange, and optionally an actor token. */
export interface ExchangeRequest extends AccessTokenRequest {
  readonly subjectToken: string;
  readonly actorToken?: string;
}

/** An access token as the token endpoint returned it, with what is needed to present it. */
export interface IssuedAccessToken {
  readonly accessToken: string;
  /** `DPoP` for DPoP-bound tokens, otherwise `Bearer` (certificate-bound tokens use the Bearer scheme). */
  readonly tokenType: 'Bearer' | 'DPoP';
  readonly expiresIn: number;
  readonly scope: string | undefined;
  /** The decoded (not verified) payload of a JWT access token; `undefined` for an opaque token. */
  readonly claims: JWTPayload | undefined;
  /** The client that holds the token: its certificate and/or DPoP key prove possession. */
  readonly credentials: ClientCredentials;
}

/** The token endpoint refused: `status` and the RFC 6749 §5.2 body. */
export class TokenEndpointError extends Error {
  override name = 'TokenEndpointError';

  constructor(readonly status: number, readonly body: Record<string, unknown>) {
    super(`token endpoint answered ${status} ${String(body.error ?? '')}${body.error_description ? `: ${String(body.error_description)}` : ''}`);
  }
}

/** Token endpoint calls on behalf of one client. */
export interface TokenClient {
  readonly credentials: ClientCredentials;
  /** `client_credentials` (RFC 6749 §4.4). */
  clientCredentials(request?: AccessTokenRequest): Promise<IssuedAccessToken>;
  /** Token exchange (RFC 8693) of a token this client received. */
  exchange(request: ExchangeRequest): Promise<IssuedAccessToken>;
  /** RFC 7009 revocation of one of this client's tokens. */
  revoke(token: string): Promise<void>;
}

/** A token endpoint client for `credentials`; its connections come from `agents`. */
export function createTokenClient(endpoints: TokenEndpoints, credentials: ClientCredentials, agents: AgentPool): TokenClient {
  // RFC 9449 §8: the last nonce the server handed out, reused until it asks for another.
  let dpopNonce: string | undefined;

  async function post(url: string, form: Record<string, string | undefined>): Promise<{ status: number; body: Record<string, unknown> }> {
    // At most one retry: when the server asks for a DPoP nonce (RFC 9449 §8.2).
    for (let attempt = 0; ; attempt += 1) {
      const headers: Record<string, string> = { accept: 'application/json', ...authenticationHeaders(credentials) };
      if (credentials.dpopKey && url === endpoints.tokenEndpoint) {
        headers.dpop = await dpopProof(credentials.dpopKey, { htm: 'POST', htu: url, nonce: dpopNonce });
      }
      const response = await fetch(url, {
        method: 'POST',
        headers,
        body: formBody({ ...authenticationForm(credentials), ...form }),
        dispatcher: agents.agentFor(credentials.certificate, endpoints.ca),
      });
      const text = await response.text();
      const body = parseJsonObject(text);
      const nonce = response.headers.get('dpop-nonce');
      if (nonce) dpopNonce = nonce;
      if (attempt === 0 && body.error === 'use_dpop_nonce' && nonce) continue;
      return { status: response.status, body };
    }
  }

  async function requestToken(form: Record<string, string | undefined>): Promise<IssuedAccessToken> {
    const { status, body } = await post(endpoints.tokenEndpoint, form);
    if (status !== 200 || typeof body.access_token !== 'string') throw new TokenEndpointError(status, body);
    return issuedToken(body, credentials);
  }

  return {
    credentials,
    clientCredentials(request = {}) {
      return requestToken({ grant_type: 'client_credentials', resource: request.resource, scope: scopeParameter(request.scope) });
    },
    exchange(request) {
      return requestToken({
        grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
        subject_token: request.subjectToken,
        subject_token_type: TOKEN_TYPE.accessToken,
        actor_token: request.actorToken,
        actor_token_type: request.actorToken === undefined ? undefined : TOKEN_TYPE.accessToken,
        resource: request.resource,
        scope: scopeParameter(request.scope),
      });
    },
    async revoke(token) {
      const { status, body } = await post(endpoints.revocationEndpoint, { token, token_type_hint: 'access_token' });
      // RFC 7009 §2.2: 200 whether or not the token was known.
      if (status !== 200) throw new TokenEndpointError(status, body);
    },
  };
}

function authenticationHeaders(credentials: ClientCredentials): Record<string, string> {
  if (credentials.secret?.method !== 'client_secret_basic') return {};
  // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined.
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  const pair = `${encode(credentials.clientId)}:${encode(credentials.secret.value)}`;
  return { authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}

function authenticationForm(credentials: ClientCredentials): Record<string, string | undefined> {
  if (credentials.secret?.method === 'client_secret_basic') return {};
  if (credentials.secret?.method === 'client_secret_post') return { client_id: credentials.clientId, client_secret: credentials.secret.value };
  // RFC 8705 §2: certificate authentication names the client in the body.
  return { client_id: credentials.clientId };
}

function formBody(form: Record<string, string | undefined>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) if (value !== undefined) body.append(name, value);
  return body;
}

function scopeParameter(scope: string | readonly string[] | undefined): string | undefined {
  if (scope === undefined) return undefined;
  return typeof scope === 'string' ? scope : scope.join(' ');
}

/** Scopes as a list, from a space-separated string or a list (empty entries dropped). */
export function scopeList(scope: string | readonly string[] | undefined): string[] {
  if (typeof scope === 'string' || scope === undefined) return scopesOf(scope);
  return scope.filter((value) => value !== '');
}

function parseJsonObject(text: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { raw: text };
  } catch {
    return { raw: text };
  }
}

function issuedToken(body: Record<string, unknown>, credentials: ClientCredentials): IssuedAccessToken {
  const accessToken = body.access_token as string;
  let claims: JWTPayload | undefined;
  try {
    claims = decodeJwt(accessToken);
  } catch {
    claims = undefined;
  }
  return {
    accessToken,
    tokenType: String(body.token_type).toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer',
    expiresIn: typeof body.expires_in === 'number' ? body.expires_in : 0,
    scope: typeof body.scope === 'string' ? body.scope : undefined,
    claims,
    credentials,
  };
}

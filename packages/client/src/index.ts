/**
 * `tether-oauth-client`: the calling side of OAuth 2.0 for a service that calls APIs.
 *
 * ```ts
 * import { createTokenClient } from 'tether-oauth-client';
 *
 * const client = createTokenClient({
 *   issuer: 'https://tether.internal',
 *   clientId: 'orders-web',
 *   auth: { method: 'tls_client_auth' },
 *   binding: { method: 'mtls' },
 *   tls: { cert, key, ca },
 * });
 * const orders = client.fetchFor({ resource: 'https://orders.internal', scopes: ['orders:read'], baseUrl: 'https://orders.internal/' });
 * const response = await orders('https://orders.internal/orders');
 * ```
 *
 * - Tokens are cached per (issuer, client, binding key, resource, scope set): a token is never sent
 *   to another API or used for more scopes than it was asked for, and each answer of the token
 *   endpoint is checked for exactly that before it is cached (`aud`, `scope`, binding, expiry).
 * - One request in flight per entry, refresh ahead of expiry with jitter, least-recently-used
 *   eviction beyond a size bound; a token an API rejects (`invalid_token`) is dropped and replaced
 *   once, never in a loop.
 * - Sender constraints are done for the caller: the certificate on every connection (RFC 8705,
 *   with `mtls_endpoint_aliases`), or a fresh DPoP proof per request (RFC 9449) with the
 *   `use_dpop_nonce` retry at the token endpoint and at the API.
 * - {@link TokenClient.exchange} turns a token this service received into one for the next API
 *   (RFC 8693), bound to this service's key: exchange instead of forwarding.
 *
 * The package depends on `jose` and `undici` only, and on nothing of the authorization server.
 *
 * @packageDocumentation
 */
export { createTokenClient } from './token_client.js';
export type { ApiTarget, BindingOptions, ExchangeOptions, TokenClient, TokenClientOptions } from './token_client.js';
export type { AccessToken } from './access_token.js';
export type { AccessRequest } from './access_request.js';
export type { ApiFetch, ApiRequestInit } from './api_fetch.js';
export { createTokenCache } from './token_cache.js';
export type { TokenCache, TokenCacheOptions, TokenCacheStats } from './token_cache.js';
export type { AssertionContext, ClientAuthentication } from './client_auth.js';
export type { DpopAlgorithm, DpopKeyPair } from './dpop.js';
export type { AuthorizationServerMetadata } from './metadata.js';
export type { FetchFunction, TlsOptions } from './transport.js';
export { ClientError, CLIENT_ERROR_CODES, isClientError, TokenEndpointError } from './errors.js';
export type { ClientErrorCode } from './errors.js';

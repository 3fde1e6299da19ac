/**
 * `tether-oauth-resource-server`: verification of Tether access tokens at the API that receives them.
 *
 * ```ts
 * import { createVerifier, koaVerifier } from 'tether-oauth-resource-server';
 *
 * const verifier = createVerifier({ issuer: 'https://tether.example', audience: 'https://api.example' });
 * app.use(koaVerifier({ verifier, publicBaseUrl: 'https://api.example', requiredScopes: ['orders:read'] }));
 * ```
 *
 * On every request: a JWS signed with an allow-listed asymmetric algorithm by a key from the
 * issuer's JWKS, `typ` `at+jwt`, exact `iss` and single-string `aud`, `exp`/`nbf`/`iat` with a small
 * leeway, the sender constraint (TLS client certificate thumbprint, RFC 8705, or DPoP proof, RFC
 * 9449), optionally revocation, then scopes. Failures are {@link VerifierError}s with stable codes,
 * rendered by {@link toHttpError} as RFC 6750 / RFC 9449 challenges.
 *
 * Operational notes:
 * - Behind a reverse proxy, set `publicBaseUrl` (DPoP `htu` must be the URL the client used, and the
 *   `Host` header is the client's to choose) and `trustedProxies` for a forwarded certificate.
 * - The default DPoP replay store is per process: several instances of one API need a shared
 *   {@link ReplayStore}, or a proof can be replayed once at each instance.
 * - The TLS client certificate thumbprint is cached per socket; with the HTTP/2 compatibility API
 *   `req.socket` is a per-stream proxy, so the cache does not help there (results stay correct).
 *
 * The package imports nothing from the Tether server and depends on one package: jose, which selects
 * and imports the issuer's keys and the DPoP proof's, and computes JWK thumbprints; signatures are
 * checked with node:crypto (jws_signature.ts).
 *
 * @packageDocumentation
 */
export { createVerifier, DEFAULT_JWKS_MAX_AGE_MS } from './verifier.js';
export type { DpopOptions, Verifier, VerifierOptions, VerifierSettings, VerifyRequest } from './verifier.js';
export type { AccessTokenClaims, Confirmation } from './verify_access_token.js';
export type { BindingKind } from './binding.js';
export { VerifierError, isVerifierError, VERIFIER_ERROR_CODES } from './errors.js';
export type { AuthScheme, OAuthResourceErrorCode, VerifierErrorCode, VerifierErrorOptions } from './errors.js';
export { toHttpError } from './http_error.js';
export type { ChallengeOptions, HttpErrorResponse } from './http_error.js';
export { DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS } from './algorithms.js';
// The JWS and signature steps of verify(), for a caller with its own claim rules (the Tether server's own tokens).
export { verifySignedJws } from './signed_jws.js';
export { typIs } from './compact_jws.js';
export type { SignedJwsKey, SignedJwsRules } from './signed_jws.js';
export { createHeaderMemo } from './header_memo.js';
export type { HeaderMemo } from './header_memo.js';
export { createSignatureMemo } from './signature_memo.js';
export type { SignatureMemo } from './signature_memo.js';
export { verificationKeyOf } from './jws_signature.js';
export type { VerificationKey } from './jws_signature.js';
export type { SupportedAlgorithm } from './algorithms.js';
export type { JsonWebKeySet } from './jwks_cache.js';
export type { FetchLike } from './fetch_json.js';
export { createMemoryReplayStore } from './replay_store.js';
export type { MemoryReplayStoreOptions, ReplayStore } from './replay_store.js';
export { createRotatingDpopNonce } from './dpop_nonce.js';
export type { DpopNonceSource, RotatingDpopNonceOptions } from './dpop_nonce.js';
export type { IntrospectionClientAuth, IntrospectionOptions, RevocationListOptions, RevocationOptions } from './revocation.js';
export { certificateThumbprint } from './certificate.js';
export type { ClientCertificateInput } from './certificate.js';
export { jwkThumbprint } from './jwk_thumbprint.js';
export { accessTokenHash, createDpopKeyCache, verifyDpopProofSignature } from './dpop_proof.js';
export type { DpopKeyCache, DpopProofSignatureRules, SignedDpopProof } from './dpop_proof.js';
export {
  createClientCertificateHeaderReader,
  isTrustedPeer,
  MAX_CLIENT_CERT_HEADER_LENGTH,
  parseForwardedCertificate,
  singleHeaderValue,
  trustedProxyList,
} from './client_cert_header.js';
export type {
  ClientCertificateHeader,
  ClientCertificateHeaderFormat,
  ClientCertificateHeaderOptions,
  ClientCertificateHeaderReader,
  ForwardedCertificate,
  ProxyCertificate,
} from './client_cert_header.js';
export { discoveryUrls } from './issuer_metadata.js';
export { buildProtectedResourceMetadata, protectedResourceMetadataUrl } from './protected_resource_metadata.js';
export type { ProtectedResourceMetadata, ProtectedResourceMetadataOptions } from './protected_resource_metadata.js';
export { createHttpAdapter, socketCertificateThumbprint, verifyRequestHeadersOf } from './http_adapter.js';
export type { HttpAdapter, HttpOptions, MiddlewareOptions } from './http_adapter.js';
export { koaVerifier } from './middleware_koa.js';
export type { KoaLikeContext, KoaLikeMiddleware } from './middleware_koa.js';
export { expressVerifier } from './middleware_express.js';
export type { ExpressLikeMiddleware, ExpressLikeNext, ExpressLikeRequest } from './middleware_express.js';
export { nodeVerifier, verifyNodeRequest } from './middleware_node.js';
export type { NodeTokenHandler } from './middleware_node.js';
export { isUseRefusalReason, USE_REFUSAL_REASONS, useRefusalReason } from './use_reasons.js';
export type { UseRefusalReason } from './use_reasons.js';
export { createUseReporter, MAX_EVENTS_PER_REPORT } from './use_reporter.js';
export type { UseReporter, UseReporterOptions, UseReporterStats, UseReportRequest } from './use_reporter.js';
export { MAX_CLAIMED_LENGTH } from './use_event.js';
export type { UseBinding, UseEvent, UseRecorder } from './use_event.js';
export { createForwardAuthHandler, headerSafe, IDENTITY_HEADERS, REFUSED_BY_HEADER, startForwardAuthServer } from './forward_auth.js';
export type {
  ForwardAuthDecision,
  ForwardAuthHandler,
  ForwardAuthHttpOptions,
  ForwardAuthOptions,
  ForwardAuthServerOptions,
  RunningForwardAuthServer,
} from './forward_auth.js';
export { compileRoutes } from './forward_auth_routes.js';
export type { ForwardAuthRoute, RouteMatcher } from './forward_auth_routes.js';
export { createOriginalRequestReader, FORWARD_AUTH_STYLES } from './forward_auth_request.js';
export type { ForwardAuthStyle, OriginalRequest, OriginalRequestReader } from './forward_auth_request.js';
export { MAX_ORIGINAL_URI_LENGTH, parseOriginalTarget } from './forward_auth_path.js';
export type { OriginalTarget } from './forward_auth_path.js';

/**
 * The JWS algorithms of Tether's server side — the one list. Tether signs its tokens with one of them
 * (`signing.algorithm`), and accepts exactly these in client assertions (RFC 7523), DPoP proofs
 * (RFC 9449 §4.3 check 5) and its own tokens handed back to it (exchange, introspection, revocation);
 * discovery advertises them (`token_endpoint_auth_signing_alg_values_supported`,
 * `dpop_signing_alg_values_supported`).
 *
 * Asymmetric only: never `none`, never HS* (a shared secret proves nothing about a key), and no RSA
 * PKCS#1 v1.5 (`RS256`; FAPI 2.0 Security Profile §5.4 allows PS256, ES256 and EdDSA).
 *
 * `EdDSA` (RFC 8037 §3.1) and `Ed25519` (RFC 9864, the fully specified identifier that
 * deprecates the polymorphic `EdDSA`) name the same Ed25519 signature over the same `OKP`/`Ed25519`
 * key. Both are accepted: oauth4webapi and openid-client send `Ed25519`, older clients `EdDSA`.
 *
 * The resource-server verifier keeps its own table (packages/resource-server/src/algorithms.ts): it is
 * published on its own and imports nothing from the server.
 */
export const JWS_ALGORITHMS = ['ES256', 'PS256', 'EdDSA', 'Ed25519'] as const;

export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];

/** True when `alg` is one of {@link JWS_ALGORITHMS} (exact and case-sensitive: RFC 7515 §4.1.1). */
export function isJwsAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return typeof alg === 'string' && (JWS_ALGORITHMS as readonly string[]).includes(alg);
}

/**
 * The algorithms a trusted external issuer's tokens may be signed with (src/federation/): Tether's
 * own list, plus the asymmetric ones common issuers sign with and Tether does not choose — RS256 is
 * the default of the Kubernetes API server, GitHub Actions and most corporate IdPs. Asymmetric only:
 * never `none`, never HS* (the "HS256 with the issuer's public key" confusion). Each issuer's
 * configuration names the subset it uses (`federation.issuers[].algorithms`).
 */
export const FEDERATION_JWS_ALGORITHMS = [...JWS_ALGORITHMS, 'RS256', 'RS384', 'RS512', 'PS384', 'PS512', 'ES384', 'ES512'] as const;

export type FederationJwsAlgorithm = (typeof FEDERATION_JWS_ALGORITHMS)[number];

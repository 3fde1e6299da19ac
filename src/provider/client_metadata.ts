import type { ClientMetadata } from 'oidc-provider';
import { BINDING_METHODS, SENDER_CONSTRAINTS } from '../binding/methods.js';
import { JWS_ALGORITHMS } from '../config/jws_algorithms.js';
import type { ClientConfig } from '../config/schema.js';

/** Client authentication methods Tether accepts (RFC 6749 §2.3, RFC 7523, RFC 8705 §2). */
export const CLIENT_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
] as const;

/**
 * The algorithms oidc-provider accepts for client assertions and DPoP proofs: the server's one list
 * (config/jws_algorithms.ts), here under the name the provider wiring uses.
 */
export const ALLOWED_JWS_ALGORITHMS: readonly string[] = JWS_ALGORITHMS;

/**
 * A federated client is registered in oidc-provider as `none`: oidc-provider itself checks no
 * credential for it, federation/client_authentication.ts does (and refuses a bare client_id).
 * `none` is enabled for that alone and never advertised (http/middleware.ts).
 */
export const FEDERATED_REGISTERED_AUTH_METHOD = 'none';

function registeredAuthMethodOf(method: ClientConfig['auth']['method']): string {
  return method === 'federated' ? FEDERATED_REGISTERED_AUTH_METHOD : method;
}

/**
 * Tether's client configuration → oidc-provider client metadata (RFC 7591 names). Every client may
 * use every grant Tether serves (`grantTypes`: grants/registry.ts); what it obtains is policy's.
 */
export function clientMetadataOf(client: ClientConfig, grantTypes: readonly string[]): ClientMetadata {
  const metadata: ClientMetadata = {
    client_id: client.id,
    grant_types: [...grantTypes],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: registeredAuthMethodOf(client.auth.method) as ClientMetadata['token_endpoint_auth_method'],
    // RFC 8705 §3.4 / RFC 9449 §5.2: oidc-provider refuses unbound tokens for these clients as well.
    ...Object.fromEntries(SENDER_CONSTRAINTS.map((method) => [BINDING_METHODS[method].clientMetadata, client.binding === method])),
  };
  return { ...metadata, ...authenticationMetadataOf(client.auth) };
}

/** The RFC 7591 / RFC 8705 §2.1.2 metadata of a client's authentication method. */
export function authenticationMetadataOf(auth: ClientConfig['auth']): Partial<ClientMetadata> {
  switch (auth.method) {
    case 'client_secret_basic':
    case 'client_secret_post':
      return { client_secret: auth.secret };
    case 'private_key_jwt':
      return {
        ...(auth.jwks ? { jwks: auth.jwks as ClientMetadata['jwks'] } : { jwks_uri: auth.jwksUri }),
        token_endpoint_auth_signing_alg: undefined,
      };
    case 'tls_client_auth':
      // RFC 8705 §2.1.2: exactly one of these is registered.
      return {
        tls_client_auth_subject_dn: auth.subjectDn,
        tls_client_auth_san_dns: auth.sanDns,
        // A SPIFFE ID is a URI SAN (X.509-SVID §2); the SVID rules are checked in federation/x509_svid.ts.
        tls_client_auth_san_uri: auth.sanUri ?? auth.spiffeId,
        tls_client_auth_san_ip: auth.sanIp,
        tls_client_auth_san_email: auth.sanEmail,
      };
    case 'self_signed_tls_client_auth':
      return { jwks: auth.jwks as ClientMetadata['jwks'] };
    case 'federated':
      return {};
  }
}

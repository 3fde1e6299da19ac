/**
 * Client authentication at the token endpoint: the methods of RFC 6749 §2.3.1, RFC 7523 (private_key_jwt),
 * RFC 8705 §2 (certificates), and a hook for assertions made elsewhere (e.g. a federated workload identity).
 *
 * @module
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';

const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** How the client proves who it is. */
export type ClientAuthentication =
  /** RFC 6749 §2.3.1: HTTP Basic with the form-encoded id and secret. */
  | { readonly method: 'client_secret_basic'; readonly secret: string }
  /** RFC 6749 §2.3.1: id and secret in the request body. */
  | { readonly method: 'client_secret_post'; readonly secret: string }
  /**
   * RFC 7523 §2.2: a JWT signed with the client's private key; a new one (new `jti`) per request,
   * `aud` the issuer identifier, `iss` = `sub` = the client id, valid `lifetimeSeconds` (default 60).
   */
  | {
    readonly method: 'private_key_jwt';
    readonly key: CryptoKey | KeyObject | JWK;
    readonly alg: string;
    readonly kid?: string;
    readonly lifetimeSeconds?: number;
  }
  /** RFC 8705 §2.1: the CA-issued certificate of `tls.cert` on the TLS connection. */
  | { readonly method: 'tls_client_auth' }
  /** RFC 8705 §2.2: the self-signed certificate of `tls.cert`, registered with the client. */
  | { readonly method: 'self_signed_tls_client_auth' }
  /**
   * An assertion obtained elsewhere, sent as `client_assertion` (RFC 7521 §4.2): the extension point
   * for federated client authentication. `assertion` is called for every token request.
   */
  | {
    readonly method: 'client_assertion';
    readonly assertion: (context: AssertionContext) => string | Promise<string>;
    /** Default `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`. */
    readonly assertionType?: string;
  };

/** What an assertion is for. */
export interface AssertionContext {
  readonly clientId: string;
  /** The issuer identifier: the audience of an assertion (RFC 7523 §3). */
  readonly issuer: string;
  readonly tokenEndpoint: string;
  /** The client's clock, epoch ms. */
  readonly now: number;
}

/** The parts a request gets: headers and form members. */
export interface AuthenticationParts {
  readonly headers: Record<string, string>;
  readonly form: Record<string, string>;
}

/** Builds the authentication of one request. */
export type Authenticator = (context: AssertionContext) => Promise<AuthenticationParts>;

/** True for the methods that authenticate with the TLS client certificate. */
export function authenticatesWithCertificate(auth: ClientAuthentication): boolean {
  return auth.method === 'tls_client_auth' || auth.method === 'self_signed_tls_client_auth';
}

/** Checks `auth` and returns the function that authenticates each request. */
export function createAuthenticator(auth: ClientAuthentication): Authenticator {
  switch (auth.method) {
    case 'client_secret_basic':
      requireString(auth.secret, 'auth.secret');
      return async ({ clientId }) => ({ headers: { authorization: basicCredentials(clientId, auth.secret) }, form: {} });
    case 'client_secret_post':
      requireString(auth.secret, 'auth.secret');
      return async ({ clientId }) => ({ headers: {}, form: { client_id: clientId, client_secret: auth.secret } });
    case 'private_key_jwt':
      return privateKeyJwt(auth);
    case 'tls_client_auth':
    case 'self_signed_tls_client_auth':
      // RFC 8705 §2: the certificate authenticates; the body names the client.
      return async ({ clientId }) => ({ headers: {}, form: { client_id: clientId } });
    case 'client_assertion': {
      if (typeof auth.assertion !== 'function') throw new TypeError('auth.assertion must be a function returning an assertion');
      const assertionType = auth.assertionType ?? JWT_BEARER_ASSERTION;
      return async (context) => {
        const assertion = await auth.assertion(context);
        requireString(assertion, 'the assertion');
        return { headers: {}, form: { client_id: context.clientId, client_assertion_type: assertionType, client_assertion: assertion } };
      };
    }
    default:
      throw new TypeError(`unsupported auth.method ${JSON.stringify((auth as { method?: unknown }).method)}`);
  }
}

/** RFC 6749 §2.3.1: the id and the secret are form-urlencoded before they are joined and base64-encoded. */
export function basicCredentials(clientId: string, secret: string): string {
  // URLSearchParams serializes exactly application/x-www-form-urlencoded (space as `+`).
  const encode = (value: string) => new URLSearchParams([['', value]]).toString().slice(1);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`;
}

function privateKeyJwt(auth: Extract<ClientAuthentication, { method: 'private_key_jwt' }>): Authenticator {
  requireString(auth.alg, 'auth.alg');
  if (/^(none|HS\d+)$/i.test(auth.alg)) throw new TypeError('private_key_jwt needs an asymmetric algorithm');
  const lifetime = auth.lifetimeSeconds ?? 60;
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 300) throw new TypeError('auth.lifetimeSeconds must be an integer from 1 to 300');
  const key = isJwk(auth.key) ? importJWK(auth.key, auth.alg) : Promise.resolve(auth.key);
  // An unusable key is reported at the first request, where the caller awaits.
  key.catch(() => undefined);
  return async ({ clientId, issuer, now }) => {
    const iat = Math.floor(now / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: auth.alg, ...(auth.kid === undefined ? {} : { kid: auth.kid }) })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(issuer)
      .setJti(randomUUID())
      .setIssuedAt(iat)
      .setExpirationTime(iat + lifetime)
      .sign(await key);
    return { headers: {}, form: { client_id: clientId, client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion } };
  };
}

function isJwk(key: unknown): key is JWK {
  return typeof key === 'object' && key !== null && typeof (key as { kty?: unknown }).kty === 'string';
}

function requireString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`);
}

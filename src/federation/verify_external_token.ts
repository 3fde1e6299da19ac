import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { TetherConfig, TrustedIssuerConfig } from '../config/schema.js';
import { hashIdentifier } from '../storage/hash_id.js';
import { issuerKeyLookup, IssuerUnavailableError, type IssuerKeyLookup, type IssuerKeyOptions } from './issuer_keys.js';

/**
 * Verifies a token issued by a trusted external issuer (docs/federation.md): the client assertion of
 * federated client authentication (RFC 7523 §2.2) and the subject token of a federated exchange
 * (RFC 8693 §2.1). In order:
 *
 *   1. a compact JWS whose protected header names no key source (`jku`, `x5u`, `x5c`, `jwk`:
 *      RFC 7515 §4.1.2–§4.1.6; keys come only from the configuration, so a token cannot point
 *      Tether at a URL or carry its own key);
 *   2. `iss` names a configured issuer (exact string); that issuer's keys, and only those, are tried;
 *   3. `alg` is one of the issuer's configured asymmetric algorithms (never `none` or HS*: an HMAC
 *      "signed" with the issuer's public key is refused before any key is looked at);
 *   4. signature; `iss`; `aud` contains the configured audience (Tether's issuer by default);
 *      `exp`, `nbf` with the issuer's leeway; `iat` present and no older than `maxTokenAge`; `sub`.
 *
 * Refusals are {@link ExternalTokenRefused} (the token's fault: 400/401) or
 * {@link IssuerUnavailableError} (the issuer's keys could not be fetched: 503, never acceptance).
 */

/** A token that is not acceptable; `reason` is private (ledger and logs). */
export class ExternalTokenRefused extends Error {
  override name = 'ExternalTokenRefused';
}

export interface VerifiedExternalToken {
  issuer: TrustedIssuerConfig;
  claims: JWTPayload & { iss: string; sub: string; exp: number; iat: number };
  /** The audience it was checked for (the issuer's `audience`, or Tether's issuer). */
  audience: string;
  /** SHA-256 (base64url) of issuer + `jti`, or of the token itself when it has no `jti`: what the ledger records. */
  tokenId: string;
}

export interface ExternalTokenVerifier {
  /** True when `iss` (unverified) names a configured issuer: the token is meant for federation. */
  isTrustedIssuer(iss: unknown): boolean;
  verify(token: string): Promise<VerifiedExternalToken>;
}

/** Key source headers a token may not carry (RFC 7515 §4.1.2 jku, §4.1.3 jwk, §4.1.5 x5u, §4.1.6 x5c). */
const KEY_SOURCE_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'] as const;

export async function externalTokenVerifier(config: Pick<TetherConfig, 'issuer' | 'federation'>, options: IssuerKeyOptions = {}): Promise<ExternalTokenVerifier> {
  const issuers = new Map<string, { issuer: TrustedIssuerConfig; keys: IssuerKeyLookup }>();
  for (const issuer of config.federation.issuers) {
    issuers.set(issuer.issuer, { issuer, keys: await issuerKeyLookup(issuer, options) });
  }

  return {
    isTrustedIssuer: (iss) => typeof iss === 'string' && issuers.has(iss),
    async verify(token) {
      const { header, payload } = decodeUnverified(token);
      for (const name of KEY_SOURCE_HEADERS) {
        if (header[name] !== undefined) throw new ExternalTokenRefused(`token header carries ${name}: keys are taken only from the configuration`);
      }
      const trusted = typeof payload.iss === 'string' ? issuers.get(payload.iss) : undefined;
      if (!trusted) throw new ExternalTokenRefused(`issuer ${JSON.stringify(payload.iss)?.slice(0, 128)} is not a trusted issuer`);
      const { issuer, keys } = trusted;
      if (typeof header.alg !== 'string' || !(issuer.algorithms as readonly string[]).includes(header.alg)) {
        throw new ExternalTokenRefused(`alg ${JSON.stringify(header.alg)?.slice(0, 32)} is not one of ${issuer.issuer}'s algorithms (${issuer.algorithms.join(', ')})`);
      }
      const audience = issuer.audience ?? config.issuer;
      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(token, keys, {
          issuer: issuer.issuer,
          audience,
          algorithms: [...issuer.algorithms],
          clockTolerance: issuer.clockLeeway,
          maxTokenAge: issuer.maxTokenAge,
          requiredClaims: ['iss', 'sub', 'exp', 'iat'],
        }));
      } catch (error) {
        if (error instanceof IssuerUnavailableError) throw error;
        throw new ExternalTokenRefused(`token of ${issuer.issuer} not accepted: ${(error as Error).message}`, { cause: error });
      }
      if (typeof claims.sub !== 'string' || claims.sub === '') throw new ExternalTokenRefused(`token of ${issuer.issuer} has no string sub`);
      const tokenId = hashIdentifier(typeof claims.jti === 'string' ? `${issuer.issuer}\0${claims.jti}` : token);
      return { issuer, claims: claims as VerifiedExternalToken['claims'], audience, tokenId };
    },
  };
}

function decodeUnverified(token: string): { header: Record<string, unknown>; payload: JWTPayload } {
  try {
    return { header: decodeProtectedHeader(token) as Record<string, unknown>, payload: decodeJwt(token) };
  } catch (error) {
    throw new ExternalTokenRefused(`not a JWT: ${(error as Error).message}`);
  }
}

/**
 * True when `claims` has every member of `required` with exactly its value (objects matched
 * recursively as subsets; arrays and scalars by equal JSON).
 */
export function claimsMatch(claims: unknown, required: Record<string, unknown> | undefined): boolean {
  if (required === undefined) return true;
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return false;
  return Object.entries(required).every(([name, expected]) => {
    if (!Object.hasOwn(claims, name)) return false;
    const actual = (claims as Record<string, unknown>)[name];
    if (typeof expected === 'object' && expected !== null && !Array.isArray(expected)) return claimsMatch(actual, expected as Record<string, unknown>);
    return JSON.stringify(actual) === JSON.stringify(expected);
  });
}

import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';

/**
 * What a token presented at the introspection or revocation endpoint is, before the ledger is asked:
 * a JWT Tether signed (signature, `typ`, `iss` checked; `exp` noted), an opaque token (identified by
 * the hash of its id, as the ledger stores it), or nothing Tether could have issued.
 */
export type PresentedToken =
  | { kind: 'jwt'; tokenId: string; claims: JWTPayload; expired: boolean }
  | { kind: 'opaque'; tokenId: string }
  | { kind: 'unrecognized'; reason: string };

/** Verifies Tether's own access tokens. */
export interface OwnTokenVerifier {
  identify(value: string): Promise<PresentedToken>;
}

/** Private key members (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2) that a verification key must not carry. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

export function publicKeysOf(jwks: { keys: readonly object[] }): JSONWebKeySet {
  return {
    keys: jwks.keys.map((key) => {
      const copy: Record<string, unknown> = { ...key };
      for (const member of PRIVATE_MEMBERS) delete copy[member];
      return copy as JWK;
    }),
  };
}

/** Same hash as grants/issuance_steps.ts opaqueTokenId: the SHA-256 of the id, base64url. */
export function hashedTokenId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

function looksLikeJwt(value: string): boolean {
  try {
    decodeProtectedHeader(value);
    return value.split('.').length === 3;
  } catch {
    return false;
  }
}

/**
 * @param keys Tether's signing keys (public members are kept, private ones dropped).
 * @param algorithms the JWS algorithms Tether signs with.
 */
export function ownTokenVerifier(options: { issuer: string; keys: { keys: readonly object[] }; algorithms: string[] }): OwnTokenVerifier {
  const keySet = createLocalJWKSet(publicKeysOf(options.keys));
  const verifyOptions = { issuer: options.issuer, typ: 'at+jwt', algorithms: options.algorithms };

  return {
    async identify(value) {
      if (!looksLikeJwt(value)) return { kind: 'opaque', tokenId: hashedTokenId(value) };
      try {
        const { payload } = await jwtVerify(value, keySet, verifyOptions);
        return typeof payload.jti === 'string'
          ? { kind: 'jwt', tokenId: payload.jti, claims: payload, expired: false }
          : { kind: 'unrecognized', reason: 'JWT without jti' };
      } catch (error) {
        // jose checks the signature before the claims: an expired token is still known to be ours.
        if (error instanceof joseErrors.JWTExpired && typeof error.payload.jti === 'string') {
          return { kind: 'jwt', tokenId: error.payload.jti, claims: error.payload, expired: true };
        }
        return { kind: 'unrecognized', reason: `JWT not accepted: ${(error as Error).message}` };
      }
    },
  };
}

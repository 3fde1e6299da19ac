import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { createDpopKeyCache, verifyDpopProofSignature, type DpopProofSignatureRules } from 'tether-oauth-resource-server';
import type { ValidatedDpopProof } from './dpop.js';
import { DPOP_PROOF_WINDOW_SECONDS } from './dpop_replay.js';

/**
 * The DPoP proof of a token request (RFC 9449 §4.3), checked as oidc-provider's own validator checks
 * the proofs of its built-in grants (lib/helpers/validate_dpop.js of the pinned version: the same
 * checks in the same order, the same answers and `DPoP-Nonce` headers), with one difference in how:
 * the signature is checked by node:crypto on this thread and each client key is imported once (the
 * resource-server package's verifyDpopProofSignature and key cache), where oidc-provider imports the
 * key and verifies through WebCrypto's thread pool on every request — about a third of a DPoP
 * token's server CPU (docs/benchmarks.md, "The token request's DPoP proof"). The package is
 * stricter in one place: a proof whose base64url is not canonical is refused.
 * test/binding/dpop_token_proof.test.ts holds the two validators to the same answers.
 */

/** oidc-provider's DPoP nonces (RFC 9449 §8), reached through provider/internals.ts. */
export interface DpopNonces {
  nextChallenge(): string;
  checkChallenge(nonce: string): boolean;
}

export interface TokenRequestProofRules {
  /** The proof algorithms accepted (discovery's `dpop_signing_alg_values_supported`). */
  algorithms: readonly string[];
  /** oidc-provider's nonces; undefined when no nonce secret is configured. */
  nonces: DpopNonces | undefined;
  /** Whether this request's proof must carry a nonce (`dpop.requireNonce` of its configuration). */
  requireNonce(ctx: KoaContextWithOIDC): boolean;
}

/** A proof is a request header: Node refuses a header section over 16 KiB before any of this runs. */
const MAX_PROOF_BYTES = 16 * 1024;

const { InvalidDpopProof, UseDpopNonce } = errors;

/**
 * The request's proof after RFC 9449 §4.3's checks, or undefined when it has none; throws
 * InvalidDpopProof or UseDpopNonce. Checked once per request (the grants ask for the proof's key
 * more than once), with one key cache per Tether.
 */
export function tokenRequestProofCheck(rules: TokenRequestProofRules): (ctx: KoaContextWithOIDC) => Promise<ValidatedDpopProof | undefined> {
  const signatureRules: DpopProofSignatureRules = { algorithms: new Set(rules.algorithms), maxProofBytes: MAX_PROOF_BYTES, keyCache: createDpopKeyCache() };
  const checked = new WeakMap<KoaContextWithOIDC, Promise<ValidatedDpopProof | undefined>>();
  return (ctx) => {
    let result = checked.get(ctx);
    if (result === undefined) {
      result = checkProof(ctx, rules, signatureRules);
      checked.set(ctx, result);
    }
    return result;
  };
}

async function checkProof(ctx: KoaContextWithOIDC, rules: TokenRequestProofRules, signatureRules: DpopProofSignatureRules): Promise<ValidatedDpopProof | undefined> {
  const proof = ctx.get('DPoP');
  if (!proof) return undefined;
  const { nonces } = rules;
  const requireNonce = rules.requireNonce(ctx);
  if (requireNonce && !nonces) throw new Error('features.dPoP.nonceSecret configuration is missing');
  const nextNonce = nonces?.nextChallenge();

  let claims: Record<string, unknown>;
  let thumbprint: string;
  try {
    let header: Record<string, unknown>;
    ({ header, claims, thumbprint } = await verifyDpopProofSignature(proof, signatureRules));
    checkEmbeddedKeyMembers(header.jwk as Record<string, unknown>, header.alg as string);
    checkJwtTimes(claims, epochSeconds());
    checkProofClaims(ctx, claims, nextNonce, nonces);
  } catch (cause) {
    if (cause instanceof InvalidDpopProof || cause instanceof UseDpopNonce) throw cause;
    throw new InvalidDpopProof('invalid DPoP key binding', { cause });
  }

  // RFC 9449 §8: the nonce, when one is required or given, must be one this server issued.
  const nonce = claims.nonce as string | undefined;
  if (!nonce && requireNonce) {
    ctx.set('dpop-nonce', nextNonce!);
    throw new UseDpopNonce('nonce is required in the DPoP proof');
  }
  if (nonce && !nonces!.checkChallenge(nonce)) {
    ctx.set('dpop-nonce', nextNonce!);
    throw new UseDpopNonce('invalid nonce in DPoP proof');
  }
  if (nonce !== nextNonce) ctx.set('dpop-nonce', nextNonce!);
  return { thumbprint, jti: claims.jti as string, iat: claims.iat as number };
}

/**
 * The members of the proof's `jwk` beside the key itself, as jose's EmbeddedJWK and WebCrypto's import
 * judge them for oidc-provider (RFC 7517 §4.2–§4.4, §4.9): `use` is `sig`, `key_ops` only `verify`,
 * `alg` the proof's own, `ext` a boolean — whenever present. The package imports only the key's own
 * members, so these are checked here.
 */
function checkEmbeddedKeyMembers(jwk: Record<string, unknown>, alg: string): void {
  if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error('the jwk\'s "use" must be "sig" when present');
  if (jwk.alg !== undefined && jwk.alg !== alg) throw new Error('the jwk\'s "alg" must be the proof\'s when present');
  if (jwk.ext !== undefined && typeof jwk.ext !== 'boolean') throw new Error('the jwk\'s "ext" must be a boolean');
  const ops = jwk.key_ops;
  if (ops !== undefined && !(Array.isArray(ops) && ops.length === 1 && ops[0] === 'verify')) throw new Error('the jwk\'s "key_ops" must be ["verify"] when present');
}

function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * RFC 7519 §4.1.4–§4.1.6 as jose's jwtVerify applies them without options (oidc-provider verifies
 * proofs with it): each of `iat`, `nbf` and `exp` that is present is a number, `nbf` is not in the
 * future and `exp` not past.
 */
function checkJwtTimes(claims: Record<string, unknown>, now: number): void {
  const { iat, nbf, exp } = claims;
  if (iat !== undefined && typeof iat !== 'number') throw new Error('"iat" claim must be a number');
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now)) throw new Error('"nbf" claim check failed');
  if (exp !== undefined && (typeof exp !== 'number' || exp <= now)) throw new Error('"exp" claim check failed');
}

/** RFC 9449 §4.2 claims and §4.3 checks 8–11 for a token request, in oidc-provider's order and words. */
function checkProofClaims(ctx: KoaContextWithOIDC, claims: Record<string, unknown>, nextNonce: string | undefined, nonces: DpopNonces | undefined): void {
  const { iat, jti, nonce, htm, htu } = claims;
  if (typeof iat !== 'number' || !iat) throw new InvalidDpopProof('DPoP proof must have a iat number property');
  if (typeof jti !== 'string' || !jti) throw new InvalidDpopProof('DPoP proof must have a jti string property');
  if (nonce !== undefined && typeof nonce !== 'string') throw new InvalidDpopProof('DPoP proof nonce must be a string');
  if (!nonce) {
    // RFC 9449 §11.1: without a nonce, only a proof made within the window around now.
    if (Math.abs(epochSeconds() - iat) > DPOP_PROOF_WINDOW_SECONDS) {
      if (nextNonce) {
        ctx.set('dpop-nonce', nextNonce);
        throw new UseDpopNonce('DPoP proof iat is not recent enough, use a DPoP nonce instead');
      }
      throw new InvalidDpopProof('DPoP proof iat is not recent enough');
    }
  } else if (!nonces) {
    throw new InvalidDpopProof('DPoP nonces are not supported');
  }
  if (htm !== ctx.method) throw new InvalidDpopProof('DPoP proof htm mismatch');
  // The endpoint's URL from the configured issuer (never the Host header), without query or fragment.
  const expected = new URL(ctx.oidc.urlFor(ctx.oidc.route)).href;
  const actual = typeof htu === 'string' ? URL.parse(htu) : null;
  if (actual === null) throw new InvalidDpopProof('DPoP proof htu mismatch');
  actual.hash = '';
  actual.search = '';
  if (actual.href !== expected) throw new InvalidDpopProof('DPoP proof htu mismatch');
}

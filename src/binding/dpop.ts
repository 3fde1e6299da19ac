import { decodeProtectedHeader } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { isJwsAlgorithm, JWS_ALGORITHMS } from '../config/jws_algorithms.js';
import { Refusal } from '../oauth/refusal.js';

/**
 * DPoP (RFC 9449) on the token path, in one place: the proof checked as oidc-provider checks its own
 * grants' proofs (dpop_token_proof.ts, passed in), the algorithm check that names what is
 * supported, and the refusal of a proof used before (its single use is recorded with the token:
 * dpop_replay.ts).
 */

/** A DPoP proof that passed RFC 9449 §4.3 checks (signature, typ, alg, htm, htu, iat/nonce). */
export interface ValidatedDpopProof {
  thumbprint: string;
  jti: string;
  iat: number;
}

/** The DPoP proofs of requests, as the binding methods use them. */
export interface DpopProofs {
  /** The request's proof after RFC 9449 §4.3's checks, or undefined when there is none. */
  validated(ctx: KoaContextWithOIDC): Promise<ValidatedDpopProof | undefined>;
}

export interface DpopDependencies {
  /** The check of the request's DPoP header (dpop_token_proof.ts). */
  validate(ctx: KoaContextWithOIDC): Promise<ValidatedDpopProof | undefined>;
}

export function dpopProofs(deps: DpopDependencies): DpopProofs {
  return {
    validated: (ctx) => validatedDpopProof(deps, ctx),
  };
}

/**
 * Check 5 of RFC 9449 §4.3 (`alg` is an asymmetric algorithm the server supports) is made here first,
 * with a description that says so: oidc-provider refuses such a proof as "invalid DPoP key binding",
 * which tells a client whose library signs with another algorithm nothing. The supported list is
 * public (discovery's `dpop_signing_alg_values_supported`); the algorithm sent goes only to the ledger.
 */
async function validatedDpopProof(deps: DpopDependencies, ctx: KoaContextWithOIDC): Promise<ValidatedDpopProof | undefined> {
  const proof = ctx.get('DPoP');
  if (proof) requireSupportedProofAlgorithm(proof);
  return deps.validate(ctx);
}

function requireSupportedProofAlgorithm(proof: string): void {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(proof).alg;
  } catch {
    // Not a JWS at all: the proof check refuses it as such.
    return;
  }
  if (isJwsAlgorithm(alg)) return;
  throw new Refusal(
    'invalid_dpop_proof',
    `unsupported DPoP proof alg; supported: ${JWS_ALGORITHMS.join(', ')}`,
    `DPoP proof alg ${JSON.stringify(alg)?.slice(0, 64)} is not one of ${JWS_ALGORITHMS.join(', ')}`,
  );
}

/**
 * RFC 9449 §11.1: the answer to a token request whose proof was already used to obtain a token (the
 * issuance statement found it recorded: ledger/record_issuance.ts). The key's thumbprint goes only to
 * the ledger and the logs.
 */
export function replayedProofRefusal(thumbprint: string): Refusal {
  return new Refusal('invalid_dpop_proof', 'DPoP proof JWT replay detected', `replayed DPoP proof jti for jkt ${thumbprint}`);
}

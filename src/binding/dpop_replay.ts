import type { ValidatedDpopProof } from './dpop.js';

/**
 * RFC 9449 §11.1: a DPoP proof is single-use. A DPoP-bound token carries its proof to the ledger, and
 * the issuance statement that records the token records the proof in the same commit
 * (ledger/record_issuance.ts): one atomic insert in the database every instance shares, so two
 * instances or two concurrent requests presenting one proof give exactly one token, and the token
 * path pays no statement of its own for the check.
 */

/** A DPoP proof to remember until `expiresAt` (after which its `iat` is out of the window anyway). */
export interface ProofRecord {
  /**
   * What identifies the proof: `${jkt}\0${jti}` (a jti is unique per key, and NUL cannot occur in
   * either). Stored as its SHA-256 only.
   */
  key: string;
  expiresAt: Date;
}

/** oidc-provider accepts a proof whose iat is within this many seconds of now (its CHALLENGE_OK_WINDOW). */
export const DPOP_PROOF_WINDOW_SECONDS = 300;

/** The record that makes `proof` single-use: kept until no clock within the window could accept it again. */
export function proofRecordOf(proof: ValidatedDpopProof, now = Date.now()): ProofRecord {
  return {
    key: `${proof.thumbprint}\0${proof.jti}`,
    expiresAt: new Date((Math.max(proof.iat, now / 1000) + DPOP_PROOF_WINDOW_SECONDS) * 1000),
  };
}

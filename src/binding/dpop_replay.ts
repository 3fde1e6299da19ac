import type { Knex } from 'knex';

import { hashIdentifier } from '../storage/hash_id.js';

/** A DPoP proof to remember until `expiresAt` (after which its `iat` is out of the window anyway). */
export interface ProofRecord {
  /**
   * Anything identifying the proof; the token path uses `${jkt}\0${jti}` (binding/dpop.ts: a jti is
   * unique per key, and NUL cannot occur in either). Stored as its SHA-256.
   */
  key: string;
  expiresAt: Date;
}

/**
 * Records a DPoP proof once (RFC 9449 §11.1, replay). Returns true when this call recorded it,
 * false when it was already recorded and still unexpired: the caller must then reject the proof.
 *
 * One atomic statement, so two instances racing with one proof get exactly one `true`. A record that
 * has expired but not been swept yet counts as absent and is replaced.
 */
export async function recordProofOnce(knex: Knex, proof: ProofRecord): Promise<boolean> {
  const result = await knex.raw(
    `insert into dpop_proofs (key_hash, expires_at) values (?, ?)
     on conflict (key_hash) do update set expires_at = excluded.expires_at
       where dpop_proofs.expires_at <= now()
     returning key_hash`,
    [hashIdentifier(proof.key), proof.expiresAt],
  // Runs on every DPoP-bound token request: a named statement is parsed and planned once per
  // PostgreSQL connection instead of every time (docs/benchmarks.md, DPoP issuance). PGlite ignores it.
  ).options({ name: 'tether_record_dpop_proof' });
  return rowsOf(result).length === 1;
}

function rowsOf(result: unknown): unknown[] {
  return (result as { rows?: unknown[] }).rows ?? [];
}

import type { Knex } from 'knex';

import { hashIdentifier } from '../storage/hash_id.js';
import { runPrepared, type PreparedStatement } from '../storage/prepared_statement.js';
import { statementBatcher, type QueueRefusal, type StatementBatcherOptions } from '../storage/statement_batcher.js';

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
 * One atomic statement for any number of proofs, so two instances racing with one proof get exactly
 * one `true`. A record that has expired but not been swept yet counts as absent and is replaced.
 * Rows are inserted in key order: two instances' statements that share keys then wait for each
 * other in the same order and cannot deadlock.
 */
const RECORD_PROOFS: PreparedStatement = {
  name: 'tether_record_dpop_proofs',
  text: `WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(key_hash text, expires_at timestamptz))
INSERT INTO dpop_proofs (key_hash, expires_at)
SELECT key_hash, expires_at FROM input ORDER BY key_hash
ON CONFLICT (key_hash) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_proofs.expires_at <= now()
RETURNING key_hash`,
};

/**
 * Records DPoP proofs once (RFC 9449 §11.1, replay), in one statement. For each proof: true when this
 * call recorded it, false when it was already recorded and still unexpired — or appears earlier in
 * the same list — and the caller must then reject the proof.
 */
export async function recordProofsOnce(knex: Knex, proofs: readonly ProofRecord[]): Promise<boolean[]> {
  const hashes = proofs.map((proof) => hashIdentifier(proof.key));
  // One statement cannot write a row twice: the first of equal keys is sent, the others are replays.
  const first = new Map<string, number>();
  hashes.forEach((hash, index) => {
    if (!first.has(hash)) first.set(hash, index);
  });
  const rows = [...first].map(([hash, index]) => ({ key_hash: hash, expires_at: proofs[index]!.expiresAt.toISOString() }));
  const recorded = new Set((await runPrepared(knex, RECORD_PROOFS, [JSON.stringify(rows)])).map((row) => row.key_hash as string));
  return hashes.map((hash, index) => first.get(hash) === index && recorded.has(hash));
}

/** One proof: see recordProofsOnce. */
export async function recordProofOnce(knex: Knex, proof: ProofRecord): Promise<boolean> {
  const [recorded] = await recordProofsOnce(knex, [proof]);
  return recorded === true;
}

/** The proof was not sent to the database: the queue was full, or it waited too long. */
export class ProofQueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProofQueueError';
  }
}

/** The replay check of the token path. */
export interface ProofReplayCheck {
  /** Resolves with recordProofsOnce's answer for this proof; rejects when the database cannot answer (or ProofQueueError). */
  recordOnce(proof: ProofRecord): Promise<boolean>;
}

function queueError(reason: QueueRefusal): ProofQueueError {
  return new ProofQueueError(reason.kind === 'queue_full'
    ? `${reason.waiting} DPoP proofs already wait for the database (database.queueLimit)`
    : `DPoP proof waited ${reason.waitedMs} ms for the database without being sent`);
}

/**
 * Concurrent replay checks share statements (storage/statement_batcher.ts), as issuances do: a lone
 * one is sent at once, those arriving meanwhile go together in the next statement. PostgreSQL's
 * cost per proof falls from about 318 µs alone to about 104 µs in a batch (docs/benchmarks.md).
 */
export function proofReplayCheck(knex: Knex, options: StatementBatcherOptions = {}): ProofReplayCheck {
  const batcher = statementBatcher<ProofRecord, boolean>(
    async (proofs) => (await recordProofsOnce(knex, proofs)).map((value) => ({ ok: true, value })),
    queueError,
    options,
  );
  return { recordOnce: (proof) => batcher.submit(proof) };
}

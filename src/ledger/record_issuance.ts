import type { Knex } from 'knex';
import type { IssuanceEventType, IssuedToken, RequestFacts } from './events.js';
import { MAX_LINEAGE_DEPTH } from './lineage.js';
import { hashIdentifier } from '../storage/hash_id.js';
import { runPrepared, type PreparedStatement } from '../storage/prepared_statement.js';

/**
 * DESIGN "no token without a record": a token's `token.issued` / `token.exchanged` event and its
 * `issued_tokens` row are committed by one statement before the token is returned. The statement
 * takes any number of issuances (issuance_batcher.ts groups concurrent ones), so its text never
 * changes and PostgreSQL can keep it prepared. A DPoP-bound token's proof is recorded as used by the
 * same statement (RFC 9449 §11.1): one statement, one commit per token, and a token only when its
 * proof was not used before.
 */

/** One issuance as the statement takes it (JSON keys are the column names). */
export interface IssuanceRow {
  type: IssuanceEventType;
  client_id: string;
  /** null: derived by the statement (the parent's subject, else the client). */
  subject: string | null;
  resource: string;
  scope: string;
  token_id: string;
  token_format: 'jwt' | 'opaque';
  binding_method: string;
  binding_thumbprint: string | null;
  expires_at: string;
  parent_token_id: string | null;
  actor: string | null;
  request_id: string;
  source_address: string | null;
  instance_id: string;
  issued_at: string;
  act: Record<string, unknown> | null;
  /** Federation (docs/federation.md): null for an exchanged token inherits its parent's. */
  external_issuer: string | null;
  external_subject: string | null;
  external_token_id: string | null;
  /** RFC 9449 §11.1: the SHA-256 of the DPoP proof's `jkt` and `jti` (binding/dpop_replay.ts), null when no proof binds the token. */
  proof_key_hash: string | null;
  /** Until when the proof is remembered. */
  proof_expires_at: string | null;
}

/** The `act` claim's acting party (RFC 8693 §4.1), for the ledger's actor column. */
function actorOf(issued: IssuedToken): string | null {
  const sub = issued.act?.sub;
  return typeof sub === 'string' ? sub : null;
}

export function issuanceRowOf(type: IssuanceRow['type'], issued: IssuedToken, facts: RequestFacts): IssuanceRow {
  return {
    type,
    client_id: issued.clientId,
    subject: issued.subject ?? null,
    resource: issued.resource,
    scope: issued.scope.join(' '),
    token_id: issued.tokenId,
    token_format: issued.format,
    binding_method: issued.binding.method,
    binding_thumbprint: issued.binding.method === 'bearer' ? null : issued.binding.thumbprint,
    expires_at: issued.expiresAt.toISOString(),
    parent_token_id: issued.parentTokenId ?? null,
    actor: actorOf(issued),
    request_id: facts.requestId,
    source_address: facts.sourceAddress ?? null,
    instance_id: facts.instanceId,
    issued_at: issued.issuedAt.toISOString(),
    act: issued.act ?? null,
    external_issuer: issued.external?.issuer ?? null,
    external_subject: issued.external?.subject ?? null,
    external_token_id: issued.external?.tokenId ?? null,
    ...proofColumnsOf(issued),
  };
}

/** The single-use proof of a DPoP-bound token, as the statement records it: only its key's hash is stored. */
function proofColumnsOf(issued: IssuedToken): Pick<IssuanceRow, 'proof_key_hash' | 'proof_expires_at'> {
  const proof = issued.binding.method === 'bearer' ? undefined : issued.binding.singleUseProof;
  return proof === undefined
    ? { proof_key_hash: null, proof_expires_at: null }
    : { proof_key_hash: hashIdentifier(proof.key), proof_expires_at: proof.expiresAt.toISOString() };
}

/** The issuance statement refused: the client was suspended after the token path checked it. */
export class ClientSuspendedError extends Error {
  constructor(readonly clientId: string) {
    super(`client ${clientId} is suspended`);
    this.name = 'ClientSuspendedError';
  }
}

/**
 * The issuance statement refused a DPoP-bound token: its proof was already used to obtain a token
 * (RFC 9449 §11.1), on this instance or another, or by another issuance of the same statement.
 */
export class ProofReplayedError extends Error {
  constructor(readonly tokenId: string, readonly thumbprint: string) {
    super(`replayed DPoP proof jti for jkt ${thumbprint}`);
    this.name = 'ProofReplayedError';
  }
}

/**
 * The issuance statement refused an exchanged token because of its subject token (its parent): the
 * parent or one of its ancestors is revoked (perhaps since the token path checked it), the parent has
 * no record, or the lineage is already as deep as a lineage may be.
 */
export class ParentRefusedError extends Error {
  constructor(readonly tokenId: string, readonly refusal: 'ancestor_revoked' | 'parent_unknown' | 'lineage_too_deep', detail: string) {
    super(detail);
    this.name = 'ParentRefusedError';
  }
}

/** What the statement did with one issuance: recorded it, or refused it (nothing of it was written). */
export type IssuanceOutcome =
  | { recorded: true }
  | { recorded: false; error: ClientSuspendedError | ProofReplayedError | ParentRefusedError };

/**
 * One statement, one implicit transaction, for every issuance given. It is prepared once per
 * connection and then runs on a generic plan that may have been made when `issued_tokens` was
 * small: every read of `issued_tokens` is therefore a probe by primary key per row (LATERAL …
 * LIMIT 1, which the planner cannot turn into a hash join over the whole table). A plan made while
 * the table was known to be small reads it whole for each probe instead; PostgreSQL's autovacuum
 * replans it as the table grows, and on PGlite storage/pglite_analyze.ts does (docs/ledger.md).
 * Under READ COMMITTED a row
 * *locked* by a statement is read in its latest committed version, even if it changed after the
 * statement's snapshot was taken; every other row is read as of the snapshot. So every fact the
 * verdict depends on is read from a locked row:
 * - each client's `client_states` row, FOR SHARE: a suspension (FOR UPDATE, client_states.ts) waits
 *   for this statement and then revokes what it wrote, or this statement waits for the suspension
 *   and reads the row as suspended. (FOR KEY SHARE would not do: a key-share lock may return the row
 *   as of the snapshot when an update committed in between.)
 * - for an exchanged token, every ancestor's `issued_tokens` row, FOR SHARE, the lineage's root first:
 *   a revocation locks the roots FOR UPDATE before it reads the lineage (revoke_tokens.ts), so it
 *   waits for this statement and then finds its child, or this statement waits for the revocation
 *   and reads the parent or an ancestor as revoked. The ancestors are found by walking up from the
 *   parent (the links never change); the walk is bounded by MAX_LINEAGE_DEPTH, and a child that
 *   would be deeper is refused, so the walk always reaches the root.
 * - the client rows are locked before any token row (the InitPlan in `ancestor`), the roots before
 *   the other ancestors, each group in id order: suspensions and revocations take their locks in
 *   the same order, so none of them can deadlock with an issuance.
 * - the DPoP proofs (RFC 9449 §11.1) last, after every client and ancestor row, in key order: an
 *   insert of a proof another statement is inserting waits for that statement and then finds the
 *   proof used; the proof is the only row two issuances can both write, so no cycle can form. Of two
 *   issuances in one statement with one proof, the one with the lower token id claims it. A proof
 *   whose record has expired but not been swept counts as unused and is recorded again. A proof is
 *   used once the statement commits even if its issuance was refused for another reason.
 * Then it inserts the events and inventory rows of the issuances it accepts (an exchanged token's
 * subject is its parent's) and answers, per issuance, whether it was recorded or why not. A batch
 * without exchanged tokens runs a text of the statement without the lineage part, one without DPoP
 * proofs a text without the proofs (STATEMENTS below).
 */
// The issuances given, and the state row of each one's client, locked.
const INPUT_CTES = `
WITH RECURSIVE input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
    type text, client_id text, subject text, resource text, scope text, token_id text, token_format text, binding_method text,
    binding_thumbprint text, expires_at timestamptz, parent_token_id text, actor text, request_id text,
    source_address text, instance_id text, issued_at timestamptz, act jsonb,
    external_issuer text, external_subject text, external_token_id text, proof_key_hash text, proof_expires_at timestamptz)
), client_state AS MATERIALIZED (
  SELECT client_id, suspended FROM client_states WHERE client_id IN (SELECT client_id FROM input)
  ORDER BY client_id FOR SHARE
`;

// For exchanged tokens: the ancestors of each one's parent, then their rows locked in lock order.
const LINEAGE_CTES = `), ancestry (child_id, token_id, parent_token_id, hops) AS (
  SELECT i.token_id, p.token_id, p.parent_token_id, 1
  FROM input i CROSS JOIN LATERAL (SELECT t.token_id, t.parent_token_id FROM issued_tokens t WHERE t.token_id = i.parent_token_id LIMIT 1) p
  UNION ALL
  SELECT a.child_id, p.token_id, p.parent_token_id, a.hops + 1
  FROM ancestry a CROSS JOIN LATERAL (SELECT t.token_id, t.parent_token_id FROM issued_tokens t WHERE t.token_id = a.parent_token_id LIMIT 1) p
  WHERE a.hops < ${MAX_LINEAGE_DEPTH}
), ancestor AS MATERIALIZED (
  SELECT l.token_id, l.revoked_at
  FROM (
    SELECT DISTINCT a.parent_token_id IS NOT NULL AS below_root, a.token_id FROM ancestry a
    WHERE (SELECT count(*) FROM client_state) >= 0
    ORDER BY below_root, a.token_id
  ) o
  CROSS JOIN LATERAL (SELECT t.token_id, t.revoked_at FROM issued_tokens t WHERE t.token_id = o.token_id FOR SHARE) l
`;

// The DPoP proofs, recorded once, after the locks of lockedFirst (the lock order above); proof_used:
// the issuances whose proof this statement recorded.
const proofCtes = (lockedFirst: 'client_state' | 'ancestor') => `), proof_claim AS MATERIALIZED (
  SELECT DISTINCT ON (proof_key_hash) proof_key_hash, proof_expires_at, token_id FROM input
  WHERE proof_key_hash IS NOT NULL AND (SELECT count(*) FROM ${lockedFirst}) >= 0
  ORDER BY proof_key_hash, token_id
), proof AS (
  INSERT INTO dpop_proofs (key_hash, expires_at)
  SELECT proof_key_hash, proof_expires_at FROM proof_claim ORDER BY proof_key_hash
  ON CONFLICT (key_hash) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_proofs.expires_at <= now()
  RETURNING key_hash
), proof_used AS MATERIALIZED (
  SELECT c.token_id FROM proof_claim c JOIN proof p ON p.key_hash = c.proof_key_hash
`;

// RFC 9449 §11.1: a token whose proof this statement did not record used a proof already used.
const proofReplayed = (proofs: boolean) => (proofs
  ? `WHEN i.proof_key_hash IS NOT NULL AND NOT EXISTS (SELECT FROM proof_used u WHERE u.token_id = i.token_id) THEN 'proof_replayed'`
  : '');

// Each issuance's refusal, if any, from the locked rows.
const lineageVerdict = (proofs: boolean) => `), verdict AS MATERIALIZED (
  SELECT i.token_id, i.client_id, revoked.token_id AS revoked_id,
    CASE
      WHEN s.suspended THEN 'client_suspended'
      ${proofReplayed(proofs)}
      WHEN i.parent_token_id IS NULL THEN NULL
      WHEN NOT EXISTS (SELECT FROM ancestry a WHERE a.child_id = i.token_id) THEN 'parent_unknown'
      WHEN revoked.token_id IS NOT NULL THEN 'ancestor_revoked'
      WHEN EXISTS (SELECT FROM ancestry a WHERE a.child_id = i.token_id AND a.hops = ${MAX_LINEAGE_DEPTH} AND a.parent_token_id IS NOT NULL)
        THEN 'lineage_too_deep'
    END AS refusal
  FROM input i
  LEFT JOIN client_state s ON s.client_id = i.client_id
  LEFT JOIN LATERAL (
    SELECT a.token_id FROM ancestry a JOIN ancestor l ON l.token_id = a.token_id
    WHERE a.child_id = i.token_id AND l.revoked_at IS NOT NULL ORDER BY a.hops LIMIT 1
  ) revoked ON true
`;

// Without exchanged tokens, only the client and the proof can refuse.
const clientVerdict = (proofs: boolean) => `
), verdict AS MATERIALIZED (
  SELECT i.token_id, i.client_id, NULL::text AS revoked_id, CASE WHEN s.suspended THEN 'client_suspended' ${proofReplayed(proofs)} END AS refusal
  FROM input i LEFT JOIN client_state s ON s.client_id = i.client_id
`;

// The accepted issuances' events, then their inventory rows (tokenInsert), and one answer per issuance.
const EVENTS = `), event AS (
  INSERT INTO ledger_events (type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint,
                             expires_at, parent_token_id, actor, request_id, source_address, instance_id, details)
  SELECT i.type, i.client_id, i.resource, i.scope, i.token_id, i.token_format, i.binding_method, i.binding_thumbprint,
         i.expires_at, i.parent_token_id, i.actor, i.request_id, i.source_address, i.instance_id,
         CASE WHEN i.external_issuer IS NOT NULL THEN jsonb_build_object('external',
           jsonb_build_object('issuer', i.external_issuer, 'subject', i.external_subject, 'token_id', i.external_token_id)) END
  FROM input i JOIN verdict v ON v.token_id = i.token_id
  WHERE v.refusal IS NULL
  RETURNING token_id
`;

/**
 * The inventory rows. An exchanged token takes what it inherits from its parent's row: the subject
 * (RFC 8693 §2.1) and, for a token exchanged from a federated one, the external identity (so it stays
 * traceable to it). A batch without exchanged tokens has no parent to read, and its text reads none:
 * a probe of issued_tokens per row that could only find nothing, and whose plan, made once per
 * session, became a sequential scan of the whole table when the session began with issued_tokens
 * known to be small (PGlite, which has no autovacuum to replan it: docs/ledger.md).
 */
const tokenInsert = (lineage: boolean) => `), token AS (
  INSERT INTO issued_tokens (token_id, format, client_id, subject, resource, scope, binding_method, binding_thumbprint, issued_at, expires_at, parent_token_id, act,
                             external_issuer, external_subject, external_token_id)
  ${lineage
    ? `SELECT i.token_id, i.token_format, i.client_id, COALESCE(i.subject, p.subject, i.client_id),
         i.resource, i.scope, i.binding_method, i.binding_thumbprint, i.issued_at, i.expires_at, i.parent_token_id, i.act,
         COALESCE(i.external_issuer, p.external_issuer), CASE WHEN i.external_issuer IS NOT NULL THEN i.external_subject ELSE p.external_subject END,
         CASE WHEN i.external_issuer IS NOT NULL THEN i.external_token_id ELSE p.external_token_id END
  FROM input i JOIN event e ON e.token_id = i.token_id
  LEFT JOIN LATERAL (SELECT t.subject, t.external_issuer, t.external_subject, t.external_token_id FROM issued_tokens t WHERE t.token_id = i.parent_token_id LIMIT 1) p ON true`
    : `SELECT i.token_id, i.token_format, i.client_id, COALESCE(i.subject, i.client_id),
         i.resource, i.scope, i.binding_method, i.binding_thumbprint, i.issued_at, i.expires_at, i.parent_token_id, i.act,
         i.external_issuer, CASE WHEN i.external_issuer IS NOT NULL THEN i.external_subject END,
         CASE WHEN i.external_issuer IS NOT NULL THEN i.external_token_id END
  FROM input i JOIN event e ON e.token_id = i.token_id`}
  RETURNING token_id
)
SELECT v.token_id, v.client_id, v.refusal, v.revoked_id, t.token_id IS NOT NULL AS recorded
FROM verdict v LEFT JOIN token t ON t.token_id = v.token_id`;

/**
 * The statement's four texts, each prepared once per connection: a batch without exchanged tokens
 * skips the lineage, one without DPoP proofs the proofs, so that client_credentials with mTLS pays
 * for neither (the empty parts cost it ~5 % in `npm run bench`, docs/benchmarks.md).
 */
const STATEMENTS = {
  issuances: { name: 'tether_record_issuances', text: INPUT_CTES + clientVerdict(false) + EVENTS + tokenInsert(false) },
  issuancesWithProofs: { name: 'tether_record_issuances_proofs', text: INPUT_CTES + proofCtes('client_state') + clientVerdict(true) + EVENTS + tokenInsert(false) },
  exchanges: { name: 'tether_record_exchanges', text: INPUT_CTES + LINEAGE_CTES + lineageVerdict(false) + EVENTS + tokenInsert(true) },
  exchangesWithProofs: { name: 'tether_record_exchanges_proofs', text: INPUT_CTES + LINEAGE_CTES + proofCtes('ancestor') + lineageVerdict(true) + EVENTS + tokenInsert(true) },
} as const satisfies Record<string, PreparedStatement>;

/** The text a batch runs (exported for the tests of its plans). */
export function issuanceStatementFor(rows: readonly Pick<IssuanceRow, 'parent_token_id' | 'proof_key_hash'>[]): PreparedStatement {
  const exchanges = rows.some((row) => row.parent_token_id !== null);
  const proofs = rows.some((row) => row.proof_key_hash !== null);
  if (exchanges) return proofs ? STATEMENTS.exchangesWithProofs : STATEMENTS.exchanges;
  return proofs ? STATEMENTS.issuancesWithProofs : STATEMENTS.issuances;
}

function refusalOf(row: Record<string, unknown>, given: Map<string, IssuanceRow>): ClientSuspendedError | ProofReplayedError | ParentRefusedError {
  const tokenId = row.token_id as string;
  const parent = given.get(tokenId)?.parent_token_id ?? null;
  switch (row.refusal) {
    case 'client_suspended': return new ClientSuspendedError(row.client_id as string);
    case 'proof_replayed': return new ProofReplayedError(tokenId, given.get(tokenId)?.binding_thumbprint ?? 'unknown');
    case 'ancestor_revoked':
      return new ParentRefusedError(tokenId, 'ancestor_revoked', row.revoked_id === parent
        ? `subject token ${parent} was revoked`
        : `subject token ${parent} descends from revoked token ${String(row.revoked_id)}`);
    case 'parent_unknown': return new ParentRefusedError(tokenId, 'parent_unknown', `subject token ${parent} has no ledger record`);
    case 'lineage_too_deep':
      return new ParentRefusedError(tokenId, 'lineage_too_deep', `subject token ${parent} already has ${MAX_LINEAGE_DEPTH} ancestors`);
    default: throw new Error(`issuance statement: unexpected refusal ${String(row.refusal)}`);
  }
}

/**
 * Records issuances in one statement; resolves with each issuance's outcome (by token id), rejects
 * when the database cannot commit — then nothing was recorded.
 */
export async function recordIssuances(knex: Knex, rows: readonly IssuanceRow[]): Promise<Map<string, IssuanceOutcome>> {
  // A named prepared statement on a pooled connection: PostgreSQL parses and plans it once per
  // connection instead of per issuance (docs/ledger.md), and knex's query building is skipped
  // (docs/benchmarks.md). PGlite runs it through knex.
  const answered = await runPrepared(knex, issuanceStatementFor(rows), [JSON.stringify(rows)]);
  const given = new Map(rows.map((row) => [row.token_id, row]));
  return new Map(answered.map((row): [string, IssuanceOutcome] => [
    row.token_id as string,
    row.recorded === true ? { recorded: true } : { recorded: false, error: refusalOf(row, given) },
  ]));
}

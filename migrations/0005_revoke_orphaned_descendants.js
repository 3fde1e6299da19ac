// Repair after race-free revocation (issue 13): before it, a token exchanged while its subject token
// was being revoked could stay live below a revoked ancestor. Introspection and exchange now treat
// such a token as revoked whatever its row says (src/ledger/lineage.ts); this marks those rows too,
// each with its `token.revoked` event, so that the inventory counts them right. Idempotent; nothing
// to undo (a revocation is never taken back).

/** The deepest a lineage walk goes (src/ledger/lineage.ts MAX_LINEAGE_DEPTH at the time of writing). */
const MAX_LINEAGE_DEPTH = 32;

export async function up(knex) {
  await knex.raw(`
    WITH RECURSIVE lineage (token_id, root, depth) AS (
      SELECT token_id, token_id, 0 FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at > now()
      UNION
      SELECT child.token_id, lineage.root, lineage.depth + 1 FROM issued_tokens child JOIN lineage ON child.parent_token_id = lineage.token_id
      WHERE lineage.depth < ${MAX_LINEAGE_DEPTH}
    ), targets AS (
      SELECT DISTINCT ON (token_id) token_id, root FROM lineage WHERE depth > 0 ORDER BY token_id, depth
    ), revoked AS (
      UPDATE issued_tokens SET revoked_at = now()
      FROM targets
      WHERE issued_tokens.token_id = targets.token_id AND issued_tokens.revoked_at IS NULL AND issued_tokens.expires_at > now()
      RETURNING issued_tokens.*, targets.root
    )
    INSERT INTO ledger_events (type, client_id, resource, scope, token_id, token_format, binding_method, binding_thumbprint,
                               expires_at, parent_token_id, actor, request_id, source_address, instance_id, details)
    SELECT 'token.revoked', client_id, resource, scope, token_id, format, binding_method, binding_thumbprint, expires_at, parent_token_id,
           'migration:0005', 'migration-0005', NULL, 'migration',
           jsonb_build_object('reason', 'derived from a revoked token (repair of a revocation that raced an exchange)', 'cascade_from', root)
    FROM revoked`);
}

export async function down() {
  // Revocations are not undone.
}

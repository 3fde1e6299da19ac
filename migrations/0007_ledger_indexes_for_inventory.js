// Secondary ledger indexes that no query reads (docs/benchmarks.md, "Ledger indexes"): every
// issuance pays for each index of ledger_events and issued_tokens in PostgreSQL CPU and WAL.
// - ledger_events_resource (resource, id): no query selects events by resource (the inventory
//   selects tokens by resource, in issued_tokens; `tether ledger` filters events by client and type).
// - issued_tokens_expires_at (expires_at): every query on expiry also names the client, the
//   resource or the revocation (issued_tokens_client_id, issued_tokens_resource, issued_tokens_revoked).
// The indexes the inventory, revocation, lineage and retention queries read all stay.
// One statement per knex.raw (PGlite cannot run several in one call); identical on PostgreSQL 15 and PGlite.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw('drop index if exists ledger_events_resource');
  await knex.raw('drop index if exists issued_tokens_expires_at');
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('create index if not exists ledger_events_resource on ledger_events (resource, id)');
  await knex.raw('create index if not exists issued_tokens_expires_at on issued_tokens (expires_at)');
}

// Workload identity federation (docs/federation.md, issue 17):
// - federated_assertions: the single use of a trusted external issuer's token presented as a client
//   assertion (RFC 7523 §3: "jti" … "MAY be used by implementations requiring message
//   de-duplication for one-time use assertions"), shared by every instance. Only the SHA-256 of
//   issuer + jti is stored; a row is dead once expires_at (the token's exp plus leeway) has passed.
// - issued_tokens.external_*: the external identity a token was issued for (its issuer, subject and
//   the SHA-256 of its token id), for `tether tokens show` and `tether tokens list --issuer`.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.schema.createTable('federated_assertions', (table) => {
    table.text('key_hash').primary();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.index(['expires_at'], 'federated_assertions_expires_at');
  });
  await knex.schema.alterTable('issued_tokens', (table) => {
    table.text('external_issuer');
    table.text('external_subject');
    table.text('external_token_id');
  });
  await knex.raw('CREATE INDEX issued_tokens_external_issuer ON issued_tokens (external_issuer, expires_at) WHERE external_issuer IS NOT NULL');
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('DROP INDEX IF EXISTS issued_tokens_external_issuer');
  await knex.schema.alterTable('issued_tokens', (table) => {
    table.dropColumn('external_issuer');
    table.dropColumn('external_subject');
    table.dropColumn('external_token_id');
  });
  await knex.schema.dropTableIfExists('federated_assertions');
}

// The exposure report (`tether report`, docs/report.md) reads the tokens that were valid during its
// window: `issued_tokens WHERE expires_at > <window start>`. No index has `expires_at` first (0007
// dropped the btree: every issuance paid for it, and no query needed it then), so without one the
// report reads every token ever issued, and issued_tokens is never pruned.
// A BRIN index fits: tokens are appended in issuance order, so `expires_at` follows the table's
// physical order; the index is a few pages (one summary per 128 heap pages), and an issuance into a
// page range not summarized yet (the newest ones, until a vacuum) writes nothing to it. Measured
// before and after in docs/benchmarks.md ("The exposure report").

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw('create index if not exists issued_tokens_expires_at_brin on issued_tokens using brin (expires_at)');
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop index if exists issued_tokens_expires_at_brin');
}

// oidc-provider's persisted models, DPoP proof replay records and shared server secrets.
// Plain SQL, one statement per knex.raw (PGlite cannot run several in one call); runs identically
// on PostgreSQL 15 and PGlite.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  // Ids (and the uid / user code / grant id lookups) are SHA-256, base64url: an opaque token id is a
  // bearer secret, so the table must not hold it in the clear.
  await knex.raw(`
    create table oidc_payloads (
      model text not null,
      id_hash text not null,
      payload jsonb not null,
      grant_id text,
      uid_hash text,
      user_code_hash text,
      expires_at timestamptz,
      consumed_at timestamptz,
      created_at timestamptz not null default now(),
      primary key (model, id_hash)
    )`);
  await knex.raw(
    'create index oidc_payloads_uid_idx on oidc_payloads (model, uid_hash) where uid_hash is not null',
  );
  await knex.raw(
    'create index oidc_payloads_user_code_idx on oidc_payloads (model, user_code_hash) where user_code_hash is not null',
  );
  await knex.raw(
    'create index oidc_payloads_grant_idx on oidc_payloads (model, grant_id) where grant_id is not null',
  );
  // The expiry sweeper scans by expires_at.
  await knex.raw(
    'create index oidc_payloads_expires_idx on oidc_payloads (expires_at) where expires_at is not null',
  );

  await knex.raw(`
    create table dpop_proofs (
      key_hash text primary key,
      expires_at timestamptz not null
    )`);
  await knex.raw('create index dpop_proofs_expires_idx on dpop_proofs (expires_at)');

  // Secrets every instance must share (e.g. the DPoP nonce key). base64url text rather than bytea:
  // pg and PGlite return bytea as different types.
  await knex.raw(`
    create table server_secrets (
      name text primary key,
      secret text not null,
      created_at timestamptz not null default now()
    )`);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop table if exists server_secrets');
  await knex.raw('drop table if exists dpop_proofs');
  await knex.raw('drop table if exists oidc_payloads');
}

// Token signing keys, shared by every instance through the database.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  // private_jwk holds either the JWK itself (no key-encryption secret configured) or an AES-256-GCM
  // envelope ({ "enc": "tether-aes-256-gcm-v1", ... }); public_jwk is always plain.
  // A key is published from created_at, signs from activated_at (the newest active one signs), and
  // is withdrawn at retired_at.
  await knex.raw(`
    create table signing_keys (
      kid text primary key,
      alg text not null,
      private_jwk jsonb not null,
      public_jwk jsonb not null,
      created_at timestamptz not null default now(),
      activated_at timestamptz not null default now(),
      retired_at timestamptz
    )`);
  await knex.raw(
    'create index signing_keys_current_idx on signing_keys (alg, activated_at desc) where retired_at is null',
  );
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop table if exists signing_keys');
}

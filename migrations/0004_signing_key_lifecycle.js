// Signing keys shared live by every instance (docs/operations.md#signing-keys):
// - published_until: when a retired key leaves the JWKS. Retirement (retired_at) stops signing at
//   once; the key stays published until every token it signed has expired. Keys retired before this
//   migration were withdrawn at retirement, so they keep that meaning.
// - every change to signing_keys is announced on the channel `tether_signing_keys` (LISTEN/NOTIFY),
//   whoever makes it (a running instance, the CLI, SQL by hand); instances re-read the keys then.
// One statement per knex.raw (PGlite cannot run several in one call); identical on PostgreSQL 15 and PGlite.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw('alter table signing_keys add column published_until timestamptz');
  await knex.raw('update signing_keys set published_until = retired_at where retired_at is not null');
  await knex.raw(`
    create function tether_signing_keys_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('tether_signing_keys', coalesce(new.kid, old.kid));
      return null;
    end
    $$`);
  await knex.raw(`
    create trigger signing_keys_changed
    after insert or update or delete on signing_keys
    for each row execute function tether_signing_keys_changed()`);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop trigger if exists signing_keys_changed on signing_keys');
  await knex.raw('drop function if exists tether_signing_keys_changed()');
  await knex.raw('alter table signing_keys drop column if exists published_until');
}

// The issuance ledger: an append-only table of token events, and the current state of each token
// (one row per token, written in the same transaction as its issuance event).

export async function up(knex) {
  await knex.schema.createTable('ledger_events', (table) => {
    table.bigIncrements('id').primary();
    table.timestamp('occurred_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.text('type').notNullable();
    table.text('client_id');
    table.text('resource');
    table.text('scope');
    table.text('token_id');
    table.text('token_format');
    table.text('binding_method');
    table.text('binding_thumbprint');
    table.timestamp('expires_at', { useTz: true });
    table.text('parent_token_id');
    table.text('actor');
    table.text('request_id');
    table.text('source_address');
    table.text('instance_id');
    table.jsonb('details');
    table.index(['token_id']);
    table.index(['client_id', 'occurred_at']);
    table.index(['resource', 'occurred_at']);
    table.index(['type', 'occurred_at']);
    table.index(['parent_token_id']);
  });

  await knex.schema.createTable('issued_tokens', (table) => {
    table.text('token_id').primary();
    table.text('format').notNullable();
    table.text('client_id').notNullable();
    table.text('resource').notNullable();
    table.text('scope').notNullable();
    table.text('binding_method').notNullable();
    table.text('binding_thumbprint');
    table.timestamp('issued_at', { useTz: true }).notNullable();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.text('parent_token_id');
    table.jsonb('act');
    table.timestamp('revoked_at', { useTz: true });
    table.timestamp('last_used_at', { useTz: true });
    table.index(['client_id', 'expires_at']);
    table.index(['resource', 'expires_at']);
    table.index(['parent_token_id']);
  });

  await knex.schema.createTable('client_states', (table) => {
    table.text('client_id').primary();
    table.boolean('suspended').notNullable().defaultTo(false);
    table.timestamp('changed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  // Append-only: the database itself refuses to change or remove an event.
  await knex.raw(`
    CREATE FUNCTION ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger_events is append-only';
    END;
    $$`);
  await knex.raw(`
    CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()`);
}

export async function down(knex) {
  await knex.raw('DROP TRIGGER IF EXISTS ledger_events_no_change ON ledger_events');
  await knex.raw('DROP FUNCTION IF EXISTS ledger_events_append_only()');
  await knex.schema.dropTableIfExists('client_states');
  await knex.schema.dropTableIfExists('issued_tokens');
  await knex.schema.dropTableIfExists('ledger_events');
}

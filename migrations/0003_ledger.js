// The issuance ledger (docs/ledger.md):
// - ledger_events: append-only; one row per issuance, exchange, revocation, introspection, rejection,
//   suspension and resumption. The database itself refuses UPDATE, DELETE and TRUNCATE.
// - issued_tokens: the current state of each token (one row per token, written by the same statement
//   as its issuance event; revoked_at and last_used_at change later).
// - client_states: whether a client is suspended. Issuance locks the client's row (FOR KEY SHARE) so
//   that a suspension waits for in-flight issuances and every issuance after it sees it.

const EVENT_TYPES = [
  'token.issued',
  'token.exchanged',
  'token.revoked',
  'token.introspected',
  'request.rejected',
  'client.suspended',
  'client.resumed',
];

export async function up(knex) {
  await knex.schema.createTable('ledger_events', (table) => {
    table.bigIncrements('id').primary();
    table.timestamp('occurred_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.text('type').notNullable();
    /** The client the event is about: the token's holder, or the client whose request was refused. */
    table.text('client_id');
    /** The token's audience (RFC 8707 resource), or the requested resource of a refused request. */
    table.text('resource');
    table.text('scope');
    /** jti of a JWT; SHA-256 (base64url) of an opaque token's id, which is itself a bearer secret. */
    table.text('token_id');
    table.text('token_format');
    /** mtls (cnf.x5t#S256), dpop (cnf.jkt) or bearer. */
    table.text('binding_method');
    table.text('binding_thumbprint');
    table.timestamp('expires_at', { useTz: true });
    /** Token exchange: the subject token's id (lineage). */
    table.text('parent_token_id');
    /** Who acted: the acting party of an exchange (act.sub), the revoking or introspecting client, or cli:<user>. */
    table.text('actor');
    table.text('request_id');
    table.text('source_address');
    table.text('instance_id');
    table.jsonb('details');
    table.index(['token_id'], 'ledger_events_token_id');
    table.index(['client_id', 'id'], 'ledger_events_client_id');
    table.index(['resource', 'id'], 'ledger_events_resource');
    table.index(['type', 'id'], 'ledger_events_type');
    table.index(['occurred_at'], 'ledger_events_occurred_at');
  });
  // DDL takes no bind parameters; the list is a constant of this file.
  await knex.raw(`ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_known CHECK (type IN (${EVENT_TYPES.map((type) => `'${type}'`).join(', ')}))`);

  await knex.schema.createTable('issued_tokens', (table) => {
    table.text('token_id').primary();
    table.text('format').notNullable();
    table.text('client_id').notNullable();
    /** The token's `sub`: its client, or for an exchanged token the subject token's subject (RFC 8693 §2.1). */
    table.text('subject').notNullable();
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
    // Inventory: a client's or an API's tokens, newest expiry first; lineage: a token's children.
    table.index(['client_id', 'expires_at'], 'issued_tokens_client_id');
    table.index(['resource', 'expires_at'], 'issued_tokens_resource');
    table.index(['parent_token_id'], 'issued_tokens_parent_token_id');
    table.index(['expires_at'], 'issued_tokens_expires_at');
  });
  // The revocation list for resource servers: revoked tokens that have not expired yet.
  await knex.raw('CREATE INDEX issued_tokens_revoked ON issued_tokens (expires_at) WHERE revoked_at IS NOT NULL');

  await knex.schema.createTable('client_states', (table) => {
    table.text('client_id').primary();
    table.boolean('suspended').notNullable().defaultTo(false);
    table.timestamp('changed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  // Append-only: the database itself refuses to change or remove an event, row by row or wholesale.
  await knex.raw(`
    CREATE FUNCTION ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$`);
  await knex.raw(`
    CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()`);
  await knex.raw(`
    CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_append_only()`);
}

export async function down(knex) {
  await knex.raw('DROP TRIGGER IF EXISTS ledger_events_no_truncate ON ledger_events');
  await knex.raw('DROP TRIGGER IF EXISTS ledger_events_no_change ON ledger_events');
  await knex.raw('DROP FUNCTION IF EXISTS ledger_events_append_only()');
  await knex.schema.dropTableIfExists('client_states');
  await knex.schema.dropTableIfExists('issued_tokens');
  await knex.schema.dropTableIfExists('ledger_events');
}

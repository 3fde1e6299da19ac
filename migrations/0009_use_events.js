// Use, recorded apart from issuance (issue 19, docs/use-reports.md):
// - use_events: append-only, one row per presentation an API (a verifier or the forward-auth
//   gateway) reported: accepted or refused, with the reason. Token ids only (the jti), never tokens.
//   `token_state` is what Tether knew of the token when the report arrived (active, expired,
//   revoked, unknown: not a token Tether recorded), so "revoked and still presented" needs no join.
//   `count` > 1 when the reporter folded identical presentations of one batch into one row.
// - use_rollups: the same events summed per day, API, client, outcome, reason, required scopes,
//   claimed audience and token state; written in the statement that appends the events. The
//   exposure report (`tether report`) reads only this table and issued_tokens, so it stays fast
//   however many events there are.
// - issued_tokens.last_used_at: the latest accepted use (introspection already sets it).

const REASONS = [
  'wrong_audience', 'expired', 'not_yet_valid', 'revoked', 'binding_mismatch', 'replayed_proof',
  'bad_signature', 'unknown_issuer', 'insufficient_scope', 'malformed', 'bad_proof', 'no_credentials',
  'unavailable',
];
const quoted = (values) => values.map((value) => `'${value}'`).join(', ');

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.schema.createTable('use_events', (table) => {
    table.bigIncrements('id').primary();
    /** When the API saw the presentation (as reported, bounded by the server to the receipt time). */
    table.timestamp('occurred_at', { useTz: true }).notNullable();
    table.timestamp('received_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    /** The API's own client, which authenticated the report. */
    table.text('reporter_client_id').notNullable();
    /** The API where the token was presented (a resource the reporter serves). */
    table.text('resource').notNullable();
    table.text('outcome').notNullable();
    /** Refused only: one of REASONS; `code` is the verifier's precise error code. */
    table.text('reason');
    table.text('code');
    /** The token's jti and client_id: verified when accepted, as claimed by the token when refused. */
    table.text('token_id');
    table.text('client_id');
    /** The audience the token claimed, when it is not this API's (a token for A presented at B). */
    table.text('token_audience');
    /** The scopes the route required, space-separated (accepted: what the token was used for). */
    table.text('scopes_required').notNullable().defaultTo('');
    /** mtls, dpop or bearer: the binding the presentation used. */
    table.text('binding_method');
    /** active, expired, revoked or unknown: the token's standing in Tether when the report arrived. */
    table.text('token_state').notNullable();
    table.integer('count').notNullable().defaultTo(1);
    table.text('instance_id');
    table.index(['token_id', 'occurred_at'], 'use_events_token_id');
    table.index(['resource', 'occurred_at'], 'use_events_resource');
  });
  await knex.raw(`ALTER TABLE use_events ADD CONSTRAINT use_events_outcome_known CHECK (outcome IN ('accepted', 'refused'))`);
  await knex.raw(`ALTER TABLE use_events ADD CONSTRAINT use_events_reason_known CHECK (
    (outcome = 'accepted' AND reason IS NULL) OR (outcome = 'refused' AND reason IN (${quoted(REASONS)})))`);
  await knex.raw(`ALTER TABLE use_events ADD CONSTRAINT use_events_state_known CHECK (token_state IN ('active', 'expired', 'revoked', 'unknown'))`);
  await knex.raw('ALTER TABLE use_events ADD CONSTRAINT use_events_count_positive CHECK (count > 0)');

  await knex.raw(`
    CREATE FUNCTION use_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'use_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$`);
  await knex.raw(`
    CREATE TRIGGER use_events_no_change BEFORE UPDATE OR DELETE ON use_events
    FOR EACH ROW EXECUTE FUNCTION use_events_append_only()`);
  await knex.raw(`
    CREATE TRIGGER use_events_no_truncate BEFORE TRUNCATE ON use_events
    FOR EACH STATEMENT EXECUTE FUNCTION use_events_append_only()`);

  await knex.schema.createTable('use_rollups', (table) => {
    table.date('day').notNullable();
    table.text('resource').notNullable();
    /** '' when the token named no client (a refused, unreadable token). */
    table.text('client_id').notNullable();
    table.text('outcome').notNullable();
    table.text('reason').notNullable();
    table.text('scopes_required').notNullable();
    table.text('token_audience').notNullable();
    table.text('token_state').notNullable();
    table.bigInteger('count').notNullable();
    table.timestamp('first_at', { useTz: true }).notNullable();
    table.timestamp('last_at', { useTz: true }).notNullable();
    table.primary(['day', 'resource', 'client_id', 'outcome', 'reason', 'scopes_required', 'token_audience', 'token_state'], { constraintName: 'use_rollups_key' });
    table.index(['client_id', 'day'], 'use_rollups_client_id');
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTableIfExists('use_rollups');
  await knex.raw('DROP TRIGGER IF EXISTS use_events_no_truncate ON use_events');
  await knex.raw('DROP TRIGGER IF EXISTS use_events_no_change ON use_events');
  await knex.raw('DROP FUNCTION IF EXISTS use_events_append_only()');
  await knex.schema.dropTableIfExists('use_events');
}

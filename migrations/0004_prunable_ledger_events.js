// Retention for the high-volume, prunable part of the ledger (docs/ledger.md#retention).
// - Rejection and introspection events (request.rejected, token.introspected) may be deleted, but
//   only by `tether ledger prune`, which sets tether.ledger_prune = 'on' for its own transaction.
// - Every other event (issuance, exchange, revocation, suspension, and ledger.pruned itself) stays
//   append-only: UPDATE, DELETE and TRUNCATE are refused as before, whoever asks.
// - ledger.pruned: the event each prune leaves (who, up to when, how many of each type).

const EVENT_TYPES = [
  'token.issued',
  'token.exchanged',
  'token.revoked',
  'token.introspected',
  'request.rejected',
  'client.suspended',
  'client.resumed',
];
const PRUNABLE_TYPES = ['request.rejected', 'token.introspected'];
const quoted = (types) => types.map((type) => `'${type}'`).join(', ');

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  // DDL takes no bind parameters; the lists are constants of this file.
  await knex.raw('ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_known');
  await knex.raw(`ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_known CHECK (type IN (${quoted([...EVENT_TYPES, 'ledger.pruned'])}))`);
  await knex.raw(`
    CREATE FUNCTION ledger_events_guard_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        IF OLD.type IN (${quoted(PRUNABLE_TYPES)}) AND current_setting('tether.ledger_prune', true) = 'on' THEN
          RETURN OLD;
        END IF;
      END IF;
      RAISE EXCEPTION 'ledger_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$`);
  await knex.raw('DROP TRIGGER ledger_events_no_change ON ledger_events');
  await knex.raw(`
    CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_guard_change()`);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('DROP TRIGGER ledger_events_no_change ON ledger_events');
  await knex.raw(`
    CREATE TRIGGER ledger_events_no_change BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only()`);
  await knex.raw('DROP FUNCTION ledger_events_guard_change()');
  await knex.raw('ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_known');
  await knex.raw(`ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_known CHECK (type IN (${quoted(EVENT_TYPES)})) NOT VALID`);
}

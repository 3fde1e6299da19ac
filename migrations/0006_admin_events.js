// The admin API (src/admin/) records every call it answers as an `admin.called` event (who, what,
// the answer's status). It is not prunable: it is the audit trail of operator actions.

/** @param {import('knex').Knex} knex */
async function knownTypes(knex) {
  const { rows } = await knex.raw(`
    SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint
    WHERE conrelid = 'ledger_events'::regclass AND conname = 'ledger_events_type_known'`);
  // Read from the constraint, not a list in this file: another migration may have added types too.
  return [...String(rows[0]?.definition ?? '').matchAll(/'([a-z_.]+)'/g)].map((match) => match[1]);
}

const quoted = (types) => types.map((type) => `'${type}'`).join(', ');

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  const types = [...new Set([...(await knownTypes(knex)), 'admin.called'])];
  await knex.raw('ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_known');
  await knex.raw(`ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_known CHECK (type IN (${quoted(types)}))`);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  const types = (await knownTypes(knex)).filter((type) => type !== 'admin.called');
  await knex.raw('ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_known');
  await knex.raw(`ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_known CHECK (type IN (${quoted(types)})) NOT VALID`);
}

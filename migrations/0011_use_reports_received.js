// Use reports are taken once (docs/use-reports.md#exactly-once): each report carries an id its
// reporter keeps when it sends the same report again (after a timeout, say, when Tether may have
// committed it and the answer was lost). The first report with an id is appended, any later one with
// the same id is answered as already recorded and writes nothing. An id is remembered for as long as
// its events could still be taken (useReports.maxEventAge, plus a margin): after that a resend is
// refused anyway, every event in it being too old. Forgetting happens in the append statement itself.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.schema.createTable('use_reports_received', (table) => {
    table.text('reporter_client_id').notNullable();
    table.text('report_id').notNullable();
    table.timestamp('received_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.primary(['reporter_client_id', 'report_id'], { constraintName: 'use_reports_received_key' });
    table.index(['received_at'], 'use_reports_received_at');
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTableIfExists('use_reports_received');
}

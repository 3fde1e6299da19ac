import { checkReadiness } from '../../src/storage/health.js';
import { migrateToLatest, migrationFileNames, pendingMigrations } from '../../src/storage/migrate.js';
import { openDatabase } from '../../src/storage/database.js';
import { createEmptyPostgresDatabase, openTestDatabase } from '../support/database.js';

describe('migrations', () => {
  it('a test database is fully migrated and ready', async () => {
    const database = await openTestDatabase();
    try {
      expect(await pendingMigrations(database.knex)).toEqual([]);
      expect(await checkReadiness(database.knex)).toEqual({ ok: true });
      expect(await migrateToLatest(database.knex)).toEqual({ applied: [] });
      for (const table of ['oidc_payloads', 'dpop_proofs', 'server_secrets', 'signing_keys', 'federated_assertions']) {
        expect(await database.knex.schema.hasTable(table)).toBe(true);
      }
    } finally {
      await database.close();
    }
  });

  it('the ledger tables keep exactly the indexes its queries read (docs/benchmarks.md, "Ledger indexes")', async () => {
    const database = await openTestDatabase();
    try {
      const { rows } = (await database.knex.raw(
        "SELECT tablename, indexname FROM pg_indexes WHERE tablename IN ('ledger_events', 'issued_tokens') ORDER BY tablename, indexname",
      )) as { rows: { tablename: string; indexname: string }[] };
      expect(rows.map((row) => `${row.tablename}.${row.indexname}`)).toEqual([
        'issued_tokens.issued_tokens_client_id',
        // tether report: the tokens valid during its window (BRIN: nothing written for the newest page ranges).
        'issued_tokens.issued_tokens_expires_at_brin',
        // tether tokens list --issuer (federation); partial: only tokens issued for an external identity.
        'issued_tokens.issued_tokens_external_issuer',
        'issued_tokens.issued_tokens_parent_token_id',
        'issued_tokens.issued_tokens_pkey',
        'issued_tokens.issued_tokens_resource',
        'issued_tokens.issued_tokens_revoked',
        'ledger_events.ledger_events_client_id',
        'ledger_events.ledger_events_occurred_at',
        'ledger_events.ledger_events_pkey',
        'ledger_events.ledger_events_token_id',
        'ledger_events.ledger_events_type',
      ]);
    } finally {
      await database.close();
    }
  });

  it('knows the migration files in order', () => {
    const names = migrationFileNames();
    expect(names.slice(0, 2)).toEqual(['0001_oidc_payloads.js', '0002_signing_keys.js']);
    expect([...names].sort()).toEqual(names);
  });

  it('readiness reports pending migrations and an unreachable database', async () => {
    const database = await openTestDatabase();
    try {
      await database.knex('knex_migrations').where({ name: '0002_signing_keys.js' }).delete();
      expect(await pendingMigrations(database.knex)).toEqual(['0002_signing_keys.js']);
      expect(await checkReadiness(database.knex)).toEqual({ ok: false, reason: 'migrations', detail: 'database migrations pending: 0002_signing_keys.js' });
    } finally {
      await database.close();
    }
    expect(await checkReadiness(database.knex)).toEqual({ ok: false, reason: 'database', detail: expect.stringMatching(/^database unreachable: /) });
  });

  const serverUrl = process.env.DATABASE_URL;
  (serverUrl ? it : it.skip)('two instances migrating one empty PostgreSQL at once both succeed, once', async () => {
    const empty = await createEmptyPostgresDatabase(serverUrl as string);
    const instances = await Promise.all([openDatabase({ url: empty.url }), openDatabase({ url: empty.url })]);
    try {
      expect(await pendingMigrations(instances[0].knex)).toEqual(migrationFileNames());
      const results = await Promise.all(instances.map((instance) => migrateToLatest(instance.knex)));
      const applied = results.flatMap((result) => result.applied).sort();
      expect(applied).toEqual(migrationFileNames());
      expect(await pendingMigrations(instances[1].knex)).toEqual([]);
      expect(await checkReadiness(instances[1].knex)).toEqual({ ok: true });
    } finally {
      await Promise.all(instances.map((instance) => instance.close()));
      await empty.drop();
    }
  });
});

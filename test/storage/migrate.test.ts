import { checkReadiness } from '../../src/storage/health.js';
import { migrateToLatest, migrationFileNames, pendingMigrations } from '../../src/storage/migrate.js';
import { openTestDatabase } from '../support/database.js';

describe('migrations', () => {
  it('a test database is fully migrated and ready', async () => {
    const database = await openTestDatabase();
    try {
      expect(await pendingMigrations(database.knex)).toEqual([]);
      expect(await checkReadiness(database.knex)).toEqual({ ok: true });
      expect(await migrateToLatest(database.knex)).toEqual({ applied: [] });
      for (const table of ['oidc_payloads', 'dpop_proofs', 'server_secrets', 'signing_keys']) {
        expect(await database.knex.schema.hasTable(table)).toBe(true);
      }
    } finally {
      await database.close();
    }
  });

  it('knows the migration files in order', () => {
    const names = migrationFileNames();
    expect(names.slice(0, 2)).toEqual(['0001_oidc_payloads.js', '0002_signing_keys.js']);
    expect([...names].sort()).toEqual(names);
  });
});

import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';

import { openMaintenanceKnex } from './maintenance_knex.js';
import { isPgliteKnex } from './knex_kind.js';

/** knex's default bookkeeping table; kept so `knex migrate:*` tooling still understands the schema. */
const MIGRATIONS_TABLE = 'knex_migrations';

/** Only plain ESM `.js` files are migrations (the package is `"type": "module"`, so knex `import()`s them). */
const MIGRATION_EXTENSIONS = ['.js'];

/**
 * Arbitrary constant identifying "Tether schema migration" among PostgreSQL advisory locks.
 * (ASCII "tethmigr" would not fit in a signed 32-bit int; any fixed number works.)
 */
const MIGRATION_ADVISORY_LOCK = 7_301_001;

let cachedMigrationsDirectory: string | undefined;

/**
 * Absolute path of the top-level `migrations/` folder.
 *
 * This module runs from `src/storage/` (tsx, ts-jest) and from `dist/src/storage/` after a build,
 * which sit two and three levels below the package root respectively.
 */
export function migrationsDirectory(): string {
  if (cachedMigrationsDirectory !== undefined) return cachedMigrationsDirectory;
  const candidates = ['../../migrations/', '../../../migrations/'].map((relative) =>
    fileURLToPath(new URL(relative, import.meta.url)),
  );
  const found = candidates.find((candidate) => existsSync(candidate) && statSync(candidate).isDirectory());
  if (found === undefined) {
    throw new Error(`cannot find the migrations folder; looked in ${candidates.join(' and ')}`);
  }
  cachedMigrationsDirectory = found;
  return found;
}

/** Migration file names in the order knex applies them. */
export function migrationFileNames(): string[] {
  return readdirSync(migrationsDirectory())
    .filter((name) => MIGRATION_EXTENSIONS.some((extension) => name.endsWith(extension)))
    .sort();
}

function migratorConfig(): Knex.MigratorConfig {
  return {
    directory: migrationsDirectory(),
    loadExtensions: MIGRATION_EXTENSIONS,
    tableName: MIGRATIONS_TABLE,
  };
}

/**
 * Applies every pending migration from the top-level `migrations/` folder.
 *
 * Safe when several instances start against one PostgreSQL at once: the whole run holds a
 * PostgreSQL advisory lock, so the others wait and then find nothing left to do (knex's own lock
 * row would make them fail instead, and its bookkeeping tables are created outside that lock).
 */
export async function migrateToLatest(knex: Knex): Promise<{ applied: string[] }> {
  // Fast path for every start after the first: when the bookkeeping table already lists exactly the
  // migration files, there is nothing to do. knex's migrator would still import every migration
  // module and write its lock row (an fsync on PGlite): 50–110 ms of a ~1 s `tether dev` start
  // (docs/benchmarks.md, cold start). Anything else — pending, or recorded but missing — takes the
  // locked path below, where knex applies or reports it.
  const applied = await appliedMigrationNames(knex);
  const files = migrationFileNames();
  if (applied.size === files.length && files.every((name) => applied.has(name))) return { applied: [] };
  // Migrating may rightly take longer than the request path's statement timeout (and the lock holder
  // sits idle in its transaction meanwhile): on PostgreSQL it runs on a connection without them.
  const maintenance = openMaintenanceKnex(knex);
  const migrator = maintenance ?? knex;
  try {
    return await withMigrationLock(migrator, async () => {
      const [, applied] = (await migrator.migrate.latest(migratorConfig())) as [number, string[]];
      return { applied };
    });
  } finally {
    await maintenance?.destroy();
  }
}

/** Names of migrations not yet applied, read without creating knex's bookkeeping tables. */
export async function pendingMigrations(knex: Knex): Promise<string[]> {
  const applied = await appliedMigrationNames(knex);
  return migrationFileNames().filter((name) => !applied.has(name));
}

async function appliedMigrationNames(knex: Knex): Promise<Set<string>> {
  if (!(await migrationsTableExists(knex))) return new Set();
  const rows = (await knex(MIGRATIONS_TABLE).select('name')) as Array<{ name: string }>;
  return new Set(rows.map((row) => row.name));
}

/**
 * Whether knex's bookkeeping table exists in the current schema. Not `knex.schema.hasTable`: its
 * information_schema query is planned over a dozen catalog views, ~120 ms as the first statement of
 * a PGlite start (the catalog caches are cold), against a few ms for a regclass lookup.
 */
async function migrationsTableExists(knex: Knex): Promise<boolean> {
  const result = (await knex.raw('select to_regclass(quote_ident(current_schema()) || ?) is not null as present', [`.${MIGRATIONS_TABLE}`])) as
    { rows: Array<{ present: boolean }> };
  return result.rows[0]?.present === true;
}

/**
 * Runs `work` while holding a transaction-level advisory lock (`pg_advisory_xact_lock`: released when
 * that transaction ends, however it ends) on a connection set aside for it.
 *
 * PGlite has a single connection inside this process, so there is nobody to exclude and holding
 * that connection would deadlock `work`; it runs directly.
 */
async function withMigrationLock<T>(knex: Knex, work: () => Promise<T>): Promise<T> {
  if (isPgliteKnex(knex)) return work();
  // A transaction pins one pool connection for the lock while `work` uses the others.
  return knex.transaction(async (lockHolder) => {
    await lockHolder.raw('select pg_advisory_xact_lock(?)', [MIGRATION_ADVISORY_LOCK]);
    return work();
  });
}

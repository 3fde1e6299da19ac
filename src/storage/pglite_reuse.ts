import type { PGlite } from '@electric-sql/pglite';

/**
 * In-memory databases given back and handed out again, instead of a new PGlite per `startTether()`
 * and per test database. A new one costs its PostgreSQL start (~200 ms of this thread here:
 * docs/benchmarks.md, 2026-12-08); emptying one that was used costs a fraction of it, paid when its
 * owner closes it.
 *
 * A database is only reused when, once emptied, nothing of its previous owner can be told from a new
 * one: its catalog, its migrations, its sequences and its planner statistics are the snapshot's
 * (compared by a fingerprint of them taken from the process's first new database before anyone
 * used it), its session is reset (`DISCARD ALL`: settings, prepared statements, temporary tables,
 * listeners, advisory locks), and every table that holds a row is truncated. A database in any
 * other state (a table created or altered, statistics gathered, a transaction left open) is closed
 * instead. Its owner only ever held a lease (`leaseOf`), ended when it gave the database back, so
 * a reference kept past `close()` fails at its next use as it would on a closed PGlite.
 *
 * The idle databases are this module's state, as a connection pool's idle connections are the
 * pool's: at most MAX_IDLE of them, each held by no one, each closed if no one takes it within IDLE_MS.
 */

/** Databases kept for reuse; one more given back is closed. A test file rarely holds more than two open at once. */
const MAX_IDLE = 2;

/**
 * How long a database waits for its next owner before it is closed. PostgreSQL inside PGlite keeps
 * timers of its own (its statistics' flush, through Emscripten's setitimer), and they keep the
 * process alive while the database is open: an idle one must not outlive its use by more than this.
 * A test's next start comes right after the last one's close, well within it.
 */
const IDLE_MS = 1000;

interface IdleDatabase {
  pglite: PGlite;
  expiry: NodeJS.Timeout;
}

const idle: IdleDatabase[] = [];
let pristineFingerprint: Promise<string | undefined> | undefined;

/** knex's own bookkeeping: its rows are the snapshot's migrations and stay. */
const KEPT_TABLES = ['knex_migrations', 'knex_migrations_lock'];

/**
 * Everything an owner could have changed that emptying the tables does not put back. Object ids
 * are part of it, so a table dropped and made again under its old name does not match. A table's
 * counted pages and rows are (TRUNCATE puts back the snapshot's: none counted), an index's are not:
 * a truncated index counts no pages where a new one counts its metapage, and the planner takes the
 * size of an index (one without a predicate) from its file and its table, not from these.
 */
const FINGERPRINT = `
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) AS fingerprint FROM (
  SELECT 'class ' || row(c.oid, c.relname, c.relkind, c.relnamespace, c.reloptions, c.relpersistence,
                         CASE WHEN c.relkind <> 'i' THEN row(c.relpages, c.reltuples) END)::text AS item
    FROM pg_class c WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
  UNION ALL SELECT 'column ' || row(a.attrelid, a.attname, a.atttypid, a.attnum, a.attnotnull, a.atthasdef, a.attisdropped)::text
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL SELECT 'default ' || row(d.adrelid, d.adnum, pg_get_expr(d.adbin, d.adrelid))::text FROM pg_attrdef d
  UNION ALL SELECT 'constraint ' || row(k.oid, k.conname, k.contype, k.conrelid)::text FROM pg_constraint k
  UNION ALL SELECT 'function ' || row(p.oid, p.proname, md5(p.prosrc))::text
    FROM pg_proc p WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL SELECT 'trigger ' || row(t.oid, t.tgname, t.tgenabled)::text FROM pg_trigger t
  -- A session's temporary schemas stay once made; DISCARD ALL has dropped what was in them.
  UNION ALL SELECT 'namespace ' || row(n.oid, n.nspname)::text FROM pg_namespace n WHERE n.nspname !~ '^pg_(toast_)?temp_'
  UNION ALL SELECT 'role ' || row(r.oid, r.rolname, r.rolsuper)::text FROM pg_authid r
  UNION ALL SELECT 'extension ' || row(e.oid, e.extname, e.extversion)::text FROM pg_extension e
  UNION ALL SELECT 'setting ' || row(s.setdatabase, s.setrole, s.setconfig)::text FROM pg_db_role_setting s
  UNION ALL SELECT 'statistics ' || s.starelid::regclass::text FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL SELECT 'sequence ' || row(q.schemaname, q.sequencename, q.last_value)::text FROM pg_sequences q
  UNION ALL SELECT 'migration ' || row(m.id, m.name, m.batch)::text FROM knex_migrations m
  UNION ALL SELECT 'migration lock ' || row(l.index, l.is_locked)::text FROM knex_migrations_lock l
) items`;

async function fingerprintOf(pglite: PGlite): Promise<string | undefined> {
  try {
    const result = await pglite.query<{ fingerprint: string }>(FINGERPRINT);
    return result.rows[0]?.fingerprint;
  } catch {
    // No knex tables (an empty database, made when the snapshot could not be built): nothing to compare with.
    return undefined;
  }
}

/**
 * Records what a database straight from the snapshot looks like; called with the process's first
 * new in-memory database, before it is handed out.
 */
export async function rememberPristine(pglite: PGlite): Promise<void> {
  pristineFingerprint ??= fingerprintOf(pglite);
  await pristineFingerprint;
}

/** An emptied database to use instead of a new one, if one is idle. */
export function takeIdle(): PGlite | undefined {
  const waiting = idle.pop();
  if (waiting === undefined) return undefined;
  clearTimeout(waiting.expiry);
  return waiting.pglite;
}

/** The tables of the public schema that hold at least one row (knex's own left out). */
async function tablesWithRows(pglite: PGlite): Promise<string[]> {
  const tables = await pglite.query<{ name: string }>(
    `SELECT quote_ident(relname) AS name FROM pg_class
     WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relname = ANY($1) ORDER BY relname`,
    [KEPT_TABLES],
  );
  if (tables.rows.length === 0) return [];
  // Names from the catalog, quoted by quote_ident.
  const probe = tables.rows.map(({ name }) => `SELECT '${name.replaceAll("'", "''")}' AS name WHERE EXISTS (SELECT FROM ${name})`).join(' UNION ALL ');
  return (await pglite.query<{ name: string }>(probe)).rows.map((row) => row.name);
}

/**
 * Empties a database and checks it against the snapshot; true when it can be handed out again.
 * The truncation runs with triggers off (session_replication_role = replica): ledger_events refuses
 * TRUNCATE to every owner (migration 0003), and this is the database being discarded, not its ledger
 * being rewritten.
 */
async function emptied(pglite: PGlite): Promise<boolean> {
  const pristine = await pristineFingerprint;
  if (pristine === undefined || pglite.closed) return false;
  // Refused inside a transaction block: a database given back mid-transaction is not reused.
  await pglite.exec('DISCARD ALL');
  const tables = await tablesWithRows(pglite);
  if (tables.length > 0) {
    await pglite.exec(`BEGIN; SET LOCAL session_replication_role = replica; TRUNCATE ${tables.join(', ')} RESTART IDENTITY; COMMIT;`);
  }
  // The sequences of the emptied tables restart with them; any other that moved restarts here (knex's own stay as they are).
  const advanced = await pglite.query<{ name: string }>(
    `SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) AS name FROM pg_sequences
     WHERE last_value IS NOT NULL AND NOT sequencename LIKE ANY (SELECT kept || '%' FROM unnest($1::text[]) AS kept)`,
    [KEPT_TABLES],
  );
  for (const { name } of advanced.rows) await pglite.exec(`ALTER SEQUENCE ${name} RESTART`);
  return (await fingerprintOf(pglite)) === pristine;
}

/** Takes a database back from its owner: kept for the next one if it empties to the snapshot's state, else closed. */
export async function giveBack(pglite: PGlite): Promise<void> {
  const reusable = idle.length < MAX_IDLE && (await emptied(pglite).catch(() => false));
  // Asked again after the wait: databases given back at once all saw room before any was kept.
  if (reusable && idle.length < MAX_IDLE) {
    const waiting: IdleDatabase = {
      pglite,
      expiry: setTimeout(() => {
        const at = idle.indexOf(waiting);
        if (at >= 0) idle.splice(at, 1);
        pglite.close().catch(() => undefined);
      }, IDLE_MS),
    };
    // The expiry itself never keeps the process alive; PGlite's own timers do, until it closes.
    waiting.expiry.unref();
    idle.push(waiting);
    return;
  }
  if (!pglite.closed) await pglite.close();
}

/**
 * What an owner holds: the database, until `end()`; from then on it is a closed PGlite to its owner
 * (`closed` is true, every call fails). Notification listeners it added are removed at the end, so
 * none of them hears the next owner's notifications.
 */
export function leaseOf(pglite: PGlite): { pglite: PGlite; end(): Promise<void> } {
  // Each one with its callback: PGlite's unlisten(channel) alone stops the channel but keeps its callbacks.
  const listeners: [channel: string, callback: (payload: string) => void][] = [];
  const unsubscribes: (() => void)[] = [];
  let ended = false;
  const proxy = new Proxy(pglite, {
    get(target, property) {
      // Given back: to its former owner it is a closed PGlite (code that asks `closed` first, as the
      // signing-key feed's close does, skips it; anything else fails).
      if (ended) {
        if (property === 'closed') return true;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? () => Promise.reject(new Error('PGlite is closed (this in-memory database was given back)')) : value;
      }
      if (property === 'listen') {
        return (channel: string, callback: (payload: string) => void, ...rest: unknown[]) => {
          listeners.push([channel, callback]);
          return (target.listen as (...args: unknown[]) => unknown).call(target, channel, callback, ...rest);
        };
      }
      if (property === 'onNotification') {
        return (callback: (channel: string, payload: string) => void) => {
          const unsubscribe = target.onNotification(callback);
          unsubscribes.push(unsubscribe);
          return unsubscribe;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      // PGlite's methods use its private fields: they run on the instance, not on the proxy.
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    pglite: proxy,
    async end() {
      ended = true;
      for (const unsubscribe of unsubscribes) unsubscribe();
      if (pglite.closed) return;
      for (const [channel, callback] of listeners) await pglite.unlisten(channel, callback);
    },
  };
}

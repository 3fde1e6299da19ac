import type { PGlite } from '@electric-sql/pglite';
import type { Knex } from 'knex';
import type pg from 'pg';
import type { Logger } from 'pino';
import { isPgliteKnex } from '../storage/knex_kind.js';

/**
 * Notifications of changes to `signing_keys` (LISTEN/NOTIFY; the table's trigger announces every
 * insert, update and delete on this channel, whoever makes it — migrations/0004).
 *
 * PostgreSQL: one dedicated connection, outside knex's pool (a LISTEN must stay on one session, and
 * must not hold a pool slot the token path needs), with TCP keepalive. When it drops it is replaced,
 * with exponential backoff; after every (re)connection `changed` is called, because changes made
 * while nobody listened were never announced. `check` replaces a connection that stopped answering
 * (a frozen server does not drop it).
 *
 * PGlite: the embedded database is owned by this one process (the directory lock keeps the CLI out
 * while the server runs), so every change is made in-process; PGlite delivers NOTIFY to in-process
 * listeners when the writing transaction commits.
 */
export const SIGNING_KEYS_CHANNEL = 'tether_signing_keys';

export interface KeyChangeFeed {
  /** Makes sure the feed is listening: a connection that does not answer within `timeoutMs` is replaced. */
  check(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface KeyChangeFeedOptions {
  /** Called on every notification and after every (re)connection. Must not throw. */
  changed(): void;
  logger: Logger;
  /** First reconnection delay; doubles per failed attempt up to `maxBackoffMs` (with jitter). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export async function watchKeyChanges(knex: Knex, options: KeyChangeFeedOptions): Promise<KeyChangeFeed> {
  if (isPgliteKnex(knex)) return watchInProcess((knex.client as { pglite: PGlite }).pglite, options);
  return watchOnDedicatedConnection(connectionSettingsOf(knex), options);
}

async function watchInProcess(pglite: PGlite, options: KeyChangeFeedOptions): Promise<KeyChangeFeed> {
  const unlisten = await pglite.listen(SIGNING_KEYS_CHANNEL, () => options.changed());
  return {
    check: async () => undefined,
    close: async () => {
      if (!pglite.closed) await unlisten();
    },
  };
}

/** knex's own connection settings (a URL or a `pg` configuration object), for a connection of our own. */
function connectionSettingsOf(knex: Knex): pg.ClientConfig {
  const settings = (knex.client as { connectionSettings?: string | pg.ClientConfig }).connectionSettings;
  const base = typeof settings === 'string' ? { connectionString: settings } : { ...settings };
  return {
    ...base,
    application_name: 'tether signing key feed',
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 10_000,
  };
}

async function watchOnDedicatedConnection(settings: pg.ClientConfig, options: KeyChangeFeedOptions): Promise<KeyChangeFeed> {
  // The PostgreSQL driver loads here: on PGlite (`tether dev`) nothing else needs it.
  const { Client } = (await import('pg')).default;
  const initialBackoffMs = options.initialBackoffMs ?? 250;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  let listening: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let connecting: Promise<void> | undefined;
  let failedAttempts = 0;
  let closed = false;
  const abandoned = new WeakSet<pg.Client>();

  function abandon(client: pg.Client, error?: Error): void {
    if (abandoned.has(client)) return;
    abandoned.add(client);
    if (listening === client) listening = undefined;
    // end() of a connection with a hung query destroys its socket (pg 8.23).
    client.end().catch(() => undefined);
    if (closed) return;
    options.logger.warn({ err: error }, 'signing key feed: connection lost; reconnecting');
    scheduleReconnect();
  }

  function scheduleReconnect(): void {
    if (closed || reconnectTimer || connecting) return;
    const backoff = Math.min(maxBackoffMs, initialBackoffMs * 2 ** failedAttempts);
    failedAttempts += 1;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void connect();
    }, backoff * (0.5 + Math.random() / 2));
    reconnectTimer.unref();
  }

  function connect(): Promise<void> {
    connecting ??= (async () => {
      const client = new Client(settings);
      client.on('error', (error) => abandon(client, error));
      client.on('end', () => abandon(client));
      client.on('notification', (message) => {
        if (message.channel === SIGNING_KEYS_CHANNEL) options.changed();
      });
      try {
        await client.connect();
        await client.query(`listen ${SIGNING_KEYS_CHANNEL}`);
      } catch (error) {
        connecting = undefined;
        abandon(client, error as Error);
        // The connection's own error event may have come first, while this attempt still counted as running.
        scheduleReconnect();
        return;
      }
      connecting = undefined;
      if (closed) {
        abandon(client);
        return;
      }
      listening = client;
      failedAttempts = 0;
      options.changed();
    })();
    return connecting;
  }

  await connect();
  return {
    async check(timeoutMs = 5000) {
      const client = listening;
      if (!client) {
        scheduleReconnect();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([client.query('select 1'), timeout]);
      } catch (error) {
        abandon(client, error as Error);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      closed = true;
      clearTimeout(reconnectTimer);
      await connecting;
      const client = listening;
      listening = undefined;
      if (client) {
        abandoned.add(client);
        await client.end().catch(() => undefined);
      }
    },
  };
}

import { pino } from 'pino';
import { watchKeyChanges, type KeyChangeFeed } from '../../src/keys/key_change_feed.js';
import { signingPolicyOf } from '../../src/keys/signing_policy.js';
import { listSigningKeys, loadSigningKeys, rotateSigningKey } from '../../src/keys/signing_keys.js';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { clientOf, eventually, fleetConfig, startFleet } from './fleet.js';
import { startTcpProxy, throughProxy, type TcpProxy } from './tcp_proxy.js';

const logger = pino({ level: 'silent' });
const TIMING = { publicationDelaySeconds: 0, retirementTailSeconds: 360 };

/** Counts `changed` calls of a feed. */
function counter() {
  let count = 0;
  return { changed: () => { count += 1; }, count: () => count };
}

describe('the change feed (LISTEN/NOTIFY on signing_keys)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  beforeAll(async () => {
    database = await openTestDatabase();
    await loadSigningKeys(database.knex, { algorithm: 'ES256' });
  });
  afterAll(async () => {
    await database?.close();
  });

  test('announces every committed change, whoever makes it, and nothing rolled back', async () => {
    const calls = counter();
    const feed = await watchKeyChanges(database.knex, { changed: calls.changed, logger });
    try {
      // A (re)connection counts as a change: what happened before listening is read then.
      const start = calls.count();
      // Another writer: a second pool on PostgreSQL; on PGlite (one owner) the same process.
      const writer: Database = database.url === undefined ? database : await openDatabase({ url: database.url });
      try {
        const { replaced } = await rotateSigningKey(writer.knex, { algorithm: 'ES256', ...TIMING });
        // One notification per row: the new key, and each key it replaces.
        await eventually('the rotation announced', async () => (calls.count() >= start + 1 + replaced.length ? true : undefined));
        const afterRotation = calls.count();
        await writer.knex.transaction(async (trx) => {
          await trx('signing_keys').update({ created_at: trx.fn.now() });
          await trx.rollback();
        }).catch(() => undefined);
        // A notification after the rolled-back change, on the same connection: only it arrives.
        await writer.knex.raw("select pg_notify('tether_signing_keys', 'probe')");
        await eventually('the probe announced', async () => (calls.count() > afterRotation ? true : undefined));
        expect(calls.count()).toBe(afterRotation + 1);
      } finally {
        if (writer !== database) await writer.close();
      }
    } finally {
      await feed.close();
    }
  });

  if (process.env.DATABASE_URL) {
    describe('on PostgreSQL, its own connection survives the network', () => {
      let proxy: TcpProxy;
      let through: Database;
      let feed: KeyChangeFeed;
      const calls = counter();

      beforeAll(async () => {
        const url = new URL(database.url!);
        proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
        through = await openDatabase({ url: throughProxy(database.url!, proxy) });
        feed = await watchKeyChanges(through.knex, { changed: calls.changed, logger, initialBackoffMs: 50, maxBackoffMs: 500 });
      });
      afterAll(async () => {
        await feed?.close();
        await through?.close();
        await proxy?.close();
      });

      /** Changes are announced again: a notification sent now arrives. */
      async function stillAnnounced(): Promise<void> {
        const before = calls.count();
        await database.knex.raw("select pg_notify('tether_signing_keys', 'probe')");
        await eventually('a notification', async () => (calls.count() > before ? true : undefined), { deadlineMs: 30_000 });
      }

      test('a dropped connection is replaced (with backoff), and announcements arrive again', async () => {
        await stillAnnounced();
        const accepted = proxy.accepted();
        proxy.cut();
        await eventually('a new listening connection', async () => {
          const rows = (await database.knex.raw(
            "select count(*)::int as n from pg_stat_activity where application_name = 'tether signing key feed' and datname = current_database()",
          )) as { rows: { n: number }[] };
          return proxy.accepted() > accepted && rows.rows[0]!.n === 1 ? true : undefined;
        }, { deadlineMs: 30_000 });
        await stillAnnounced();
      });

      test('a connection that stops answering (a frozen server) is replaced by check()', async () => {
        await stillAnnounced();
        proxy.freeze();
        await feed.check(300);
        const accepted = proxy.accepted();
        // The replacement waits for the server like everything else; once it answers again, announcements flow.
        await eventually('a reconnection attempt', async () => (proxy.accepted() > accepted ? true : undefined), { deadlineMs: 30_000 });
        proxy.thaw();
        await stillAnnounced();
      });
    });
  }
});

describe('on a running fleet', () => {
  test('the periodic re-read is the safety net: with no notification at all, every instance follows the keys', async () => {
    const fleet = await startFleet({ size: 2, config: fleetConfig({ reloadInterval: 1 }) });
    const client = clientOf(fleet);
    try {
      await fleet.cli.raw('drop trigger signing_keys_changed on signing_keys');
      const policy = signingPolicyOf(fleet.config);
      const { kid } = await rotateSigningKey(fleet.cli, { ...policy, publicationDelaySeconds: 0 });
      for (const index of fleet.instances.keys()) {
        await eventually(`instance ${index} signing with ${kid}`, async () => ((await client.token(index)).kid === kid ? true : undefined));
        expect(await client.jwksKids(index)).toContain(kid);
      }
    } finally {
      await client.close();
      await fleet.close();
    }
  });

  test('scheduled rotation (signing.rotateEvery): each new key is staged by one instance, on time, and every instance signs with it', async () => {
    const fleet = await startFleet({ size: 2, config: fleetConfig({ rotateEvery: 4, publicationDelay: 2, reloadInterval: 1 }) });
    const client = clientOf(fleet);
    try {
      const keys = await eventually('two scheduled rotations', async () => {
        const listed = await listSigningKeys(fleet.cli);
        return listed.length >= 3 ? listed : undefined;
      });
      // Oldest first: every key activates rotateEvery (or, when staged late, more) after its predecessor.
      const chain = [...keys].sort((a, b) => a.activatedAt.getTime() - b.activatedAt.getTime());
      for (let index = 1; index < chain.length; index += 1) {
        expect(chain[index]!.activatedAt.getTime() - chain[index - 1]!.activatedAt.getTime()).toBeGreaterThanOrEqual(4000);
      }
      expect(chain.filter((key) => key.state === 'staged').length).toBeLessThanOrEqual(1);
      const active = await eventually('an active rotated key', async () => {
        const listed = await listSigningKeys(fleet.cli);
        const current = listed.find((key) => key.state === 'active');
        return current && current.kid !== chain[0]!.kid ? current.kid : undefined;
      });
      for (const index of fleet.instances.keys()) {
        await eventually(`instance ${index} signing with a rotated key`, async () => {
          const { kid } = await client.token(index);
          return kid !== chain[0]!.kid ? true : undefined;
        });
      }
      expect(active).toEqual(expect.any(String));
    } finally {
      await client.close();
      await fleet.close();
    }
  });
});

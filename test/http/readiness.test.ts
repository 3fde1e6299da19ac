import { Writable } from 'node:stream';
import { pino } from 'pino';
import { fetch, type Agent } from 'undici';
import { openDatabase, type Database } from '../../src/storage/database.js';
import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import { testConfig } from '../support/config.js';
import { openTestDatabase } from '../support/database.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp_proxy.js';

/**
 * Issue 12 item 10: /readyz is public, so it says only that the instance is not ready and a coarse
 * reason (`database`, `migrations`); the driver's error (host, port, message) is logged, once per
 * change of state.
 */

class LogLines extends Writable {
  readonly lines: Record<string, unknown>[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    callback();
  }

  about(word: string): Record<string, unknown>[] {
    return this.lines.filter((line) => String(line.msg).startsWith(word));
  }
}

const onPostgres = Boolean(process.env.DATABASE_URL);

let testDatabase: Database & { url?: string };
let proxy: TcpProxy | undefined;
let database: Database;
let tether: RunningTether;
let dispatcher: Agent;
const log = new LogLines();

beforeAll(async () => {
  testDatabase = await openTestDatabase();
  if (testDatabase.url) {
    // Tether reaches PostgreSQL only through a proxy this test can cut.
    const url = new URL(testDatabase.url);
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    database = await openDatabase({ url: url.toString() });
  } else {
    database = testDatabase;
  }
  tether = await startTether({ config: testConfig(), database, logger: pino({ level: 'info' }, log) });
  dispatcher = tether.dispatcherFor();
});

afterAll(async () => {
  await tether?.close();
  await proxy?.restore().catch(() => undefined);
  if (database !== testDatabase) await database?.close();
  await proxy?.close();
  await testDatabase?.close().catch(() => undefined);
});

async function readyz(): Promise<{ status: number; text: string }> {
  const response = await fetch(`${tether.issuer}/readyz`, { dispatcher });
  return { status: response.status, text: await response.text() };
}

test('pending migrations: 503 {"status":"not ready","reason":"migrations"}, the migration named only in the log', async () => {
  expect(await readyz()).toEqual({ status: 200, text: '{"status":"ready"}' });
  const [row] = await testDatabase.knex('knex_migrations').where({ name: '0002_signing_keys.js' });
  await testDatabase.knex('knex_migrations').where({ id: row.id }).delete();
  try {
    for (let probe = 0; probe < 3; probe += 1) expect(await readyz()).toEqual({ status: 503, text: '{"status":"not ready","reason":"migrations"}' });
  } finally {
    await testDatabase.knex('knex_migrations').insert(row);
  }
  expect(await readyz()).toEqual({ status: 200, text: '{"status":"ready"}' });
  expect(log.about('not ready')).toEqual([expect.objectContaining({ level: 50, reason: 'migrations', detail: 'database migrations pending: 0002_signing_keys.js' })]);
  expect(log.about('ready:')).toHaveLength(1);
});

(onPostgres ? test : test.skip)('PostgreSQL unreachable: 503 without host, port or driver error; the log line has them, once', async () => {
  await proxy!.cut();
  const answers = [];
  for (let probe = 0; probe < 5; probe += 1) answers.push(await readyz());
  for (const answer of answers) {
    expect(answer).toEqual({ status: 503, text: '{"status":"not ready","reason":"database"}' });
  }
  // The first probe may meet a pooled connection the cut has just closed ("Connection terminated
  // unexpectedly") or open a new one (ECONNREFUSED with host and port); either way one line.
  const notReady = log.about('not ready').filter((line) => line.reason === 'database');
  expect(notReady).toHaveLength(1);
  expect(notReady[0]!.detail).toMatch(new RegExp(`^database unreachable: (.*ECONNREFUSED 127\\.0\\.0\\.1:${proxy!.port}|.*Connection terminated)`));
  for (const answer of answers) {
    for (const secret of [String(proxy!.port), '127.0.0.1', 'ECONNREFUSED', 'terminated', 'select 1']) expect(answer.text).not.toContain(secret);
  }

  await proxy!.restore();
  let back = await readyz();
  for (let attempt = 0; back.status !== 200 && attempt < 50; attempt += 1) back = await readyz();
  expect(back).toEqual({ status: 200, text: '{"status":"ready"}' });
  expect(log.about('ready:')).toHaveLength(2);
});

(onPostgres ? test.skip : test)('PGlite closed: 503 without the driver error; the log line has it, once', async () => {
  await database.close();
  for (let probe = 0; probe < 5; probe += 1) {
    expect(await readyz()).toEqual({ status: 503, text: '{"status":"not ready","reason":"database"}' });
  }
  const notReady = log.about('not ready').filter((line) => line.reason === 'database');
  expect(notReady).toHaveLength(1);
  expect(notReady[0]!.detail).toMatch(/^database unreachable: ./);
});

// startTether: a real Tether per call, on loopback, independent of every other instance.
import { connect } from 'node:net';
import { fetch } from 'undici';
import { ConfigError } from '../../src/config/load_config.js';
import { startTether, type RunningTether } from '../../src/testing/index.js';
import { openTestDatabase } from '../support/database.js';
import { ORDERS, harnessConfig } from './harness_config.js';

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: Math.round(performance.now() - started) };
}

function portOf(tether: RunningTether): number {
  return Number(new URL(tether.issuer).port);
}

async function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('startTether()', () => {
  test('in-memory PGlite, own PKI and port: the first start, then the next ones (timings reported, not asserted)', async () => {
    const first = await timed(() => startTether());
    await first.value.close();
    const next: number[] = [];
    for (let index = 0; index < 3; index += 1) {
      const started = await timed(() => startTether());
      next.push(started.ms);
      await started.value.close();
    }
    expect(first.value.database.kind).toBe('pglite');
    console.info(`startTether: first ${first.ms} ms in this test file, then ${next.join(', ')} ms`);
  });

  test('several at once are independent: issuer, port, signing keys, CA and database', async () => {
    const [a, b, c] = await Promise.all([startTether(), startTether(), startTether({ config: harnessConfig() })]);
    try {
      expect(new Set([a.issuer, b.issuer, c.issuer]).size).toBe(3);
      expect(a.issuer).toMatch(/^https:\/\/localhost:\d+$/);
      expect(a.jwks.keys[0]!.kid).not.toBe(b.jwks.keys[0]!.kid);
      expect(a.pki.ca.certificatePem).not.toBe(b.pki.ca.certificatePem);
      await a.database.knex('server_secrets').insert({ name: 'only-in-a', secret: 'x' });
      expect(await b.database.knex('server_secrets').where({ name: 'only-in-a' }).first()).toBeUndefined();
      expect(c.config.resources.map((resource) => resource.uri)).toContain(ORDERS);
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  test('jwks is what the JWKS endpoint serves, and has no private members', async () => {
    const tether = await startTether();
    try {
      const response = await fetch(tether.jwksUri, { dispatcher: tether.dispatcherFor() });
      expect(await response.json()).toEqual(tether.jwks);
      expect(tether.jwks.keys[0]).not.toHaveProperty('d');
    } finally {
      await tether.close();
    }
  });

  test('close() stops the listener and closes the database it opened', async () => {
    const tether = await startTether();
    const port = portOf(tether);
    await tether.close();
    expect(await refusesConnections(port)).toBe(true);
    await expect(tether.database.knex.raw('select 1')).rejects.toThrow();
  });

  test('a given database (DATABASE_URL when set) is migrated, used, and left open', async () => {
    const database = await openTestDatabase();
    try {
      const tether = await startTether({ database, config: harnessConfig() });
      await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
      await tether.close();
      expect(Number((await database.knex('issued_tokens').count({ count: '*' }))[0]!.count)).toBe(1);
    } finally {
      await database.close();
    }
  });

  test('a bad configuration is a ConfigError, and nothing stays open', async () => {
    await expect(startTether({ config: { resources: [{ uri: 'not a uri' }], clients: [] } })).rejects.toBeInstanceOf(ConfigError);
  });

  test('the result may be spread (test helpers wrap close)', async () => {
    const tether = await startTether();
    const wrapped = { ...tether, close: async () => tether.close() };
    try {
      const token = await wrapped.token({ client: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read' });
      expect(token.claims?.client_id).toBe('orders-worker');
    } finally {
      await wrapped.close();
    }
  });
});

import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import { planReload } from '../../src/config/reload_plan.js';
import { startModeIssues, type TetherConfig } from '../../src/config/schema.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, LEGACY, LEGACY_SECRET, testConfig } from '../support/config.js';
import { ASSERTION_TYPE, assertingClient } from '../support/hostile_requests.js';
import { basicAuth, postForm, startTestTether } from '../support/tether.js';

// TetherApp.reconfigure, in-process (the SIGHUP path of a real process is test/cli/config_reload.test.ts):
// what a reload refuses beyond the file's own validation, and what it reports as needing a restart.

let tether: RunningTether;

beforeAll(async () => {
  tether = await startTestTether({ config: testConfig() });
});

afterAll(async () => {
  await tether?.close();
});

/** The running configuration with `change` applied to a copy of its raw form, validated as a file is. */
function changed(change: (raw: Record<string, unknown>) => void): TetherConfig {
  const raw = structuredClone(tether.config) as unknown as Record<string, unknown>;
  change(raw);
  return parseConfig(raw);
}

const legacyToken = () => postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'legacy-client', client_secret: LEGACY_SECRET, resource: LEGACY }, { dispatcher: tether.dispatcherFor() });

describe('what a reload refuses, whole', () => {
  test('client metadata oidc-provider refuses (a symmetric key in a self-signed client\'s jwks) → ConfigError naming the client; nothing changes', async () => {
    const generation = tether.app.configuration().generation;
    const next = changed((raw) => {
      (raw.clients as unknown[]).push({
        id: 'symmetric', owner: 'o', purpose: 'p', binding: 'mtls',
        auth: { method: 'self_signed_tls_client_auth', jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' }] } },
      });
      (raw.clients as { id: string }[]).splice(3, 1);
    });
    const refusal = await tether.app.reconfigure(next, { source: 'tether.config.yaml' }).then(() => undefined, (error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).problems).toEqual([expect.stringMatching(/^tether\.config\.yaml: clients\[3\]: /)]);
    expect((refusal as ConfigError).message).not.toContain('c2VjcmV0');
    expect(tether.app.configuration().generation).toBe(generation);
    // legacy-client was removed in the refused file: it still gets tokens.
    expect((await legacyToken()).status).toBe(200);
  });

  test('a file that passes `tether start`\'s checks only with a restart-only change (a client CA for a new tls_client_auth client) is refused', async () => {
    const next = changed((raw) => {
      const listeners = raw.listeners as { https: Record<string, unknown> };
      listeners.https = { ...listeners.https, clientCaFile: '/etc/tether/ca.pem' };
    });
    // Alone, the file is servable; with the running listeners (no client CA file), it is not.
    expect(startModeIssues(next)).toEqual([]);
    const refusal = await tether.app.reconfigure(next, { source: 'tether.config.yaml', checks: startModeIssues }).then(() => undefined, (error: unknown) => error);
    expect((refusal as ConfigError).problems).toEqual([expect.stringMatching(/^tether\.config\.yaml: listeners\.https\.clientCaFile: required by tether start/)]);
  });
});

describe('what a reload applies', () => {
  test('clients change for the next request; restart-only paths are listed and keep their running value', async () => {
    const next = changed((raw) => {
      (raw.clients as { id: string }[]).splice(3, 1);
      raw.issuer = 'https://elsewhere.example';
      (raw.signing as Record<string, unknown>).encryptionSecret = 'another-encryption-secret-0123456789';
    });
    const done = await tether.app.reconfigure(next);
    expect(done).toMatchObject({ clients: 3, needsRestart: ['issuer', 'signing.encryptionSecret'] });
    expect(tether.app.configuration().config.issuer).toBe(tether.issuer);
    const refused = await legacyToken();
    expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    // Other clients are untouched.
    const dpop = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', resource: LEGACY }, { dispatcher: tether.dispatcherFor(), headers: { authorization: basicAuth('dpop-client', DPOP_SECRET) } });
    expect(dpop.body.error).not.toBe('invalid_client');
  });

  test('planReload: live sections from the file, every other one from the running configuration; paths only', () => {
    const running = tether.app.configuration().config;
    const next = changed((raw) => {
      raw.trustedProxies = ['10.0.0.1'];
      (raw.http as Record<string, unknown>).maxConnections = 7;
      (raw.exchange as Record<string, unknown>).maxChainDepth = 1;
    });
    const plan = planReload(running, next);
    expect(plan.needsRestart).toEqual(['trustedProxies', 'http.maxConnections']);
    expect(plan.config.trustedProxies).toEqual(running.trustedProxies);
    expect(plan.config.exchange.maxChainDepth).toBe(1);
    expect(planReload(running, running).needsRestart).toEqual([]);
  });

  // PostgreSQL: the hold is a table lock another connection takes, and the wait is seen in pg_locks.
  (process.env.DATABASE_URL ? test : test.skip)('a request in flight keeps the configuration it started with: a client removed while its request is being authenticated still gets its token; the next request is invalid_client', async () => {
    const { knex } = tether.database;
    const asserting = await assertingClient('held-client');
    const current = () => structuredClone(tether.app.configuration().config) as unknown as Record<string, unknown> & { clients: Record<string, unknown>[] };
    const withHeld = current();
    withHeld.clients.push({ ...asserting.config, binding: 'none', resources: { [LEGACY]: ['legacy:read'] } });
    await tether.app.reconfigure(parseConfig(withHeld));
    const request = async () => postForm(tether.tokenEndpoint, {
      grant_type: 'client_credentials', resource: LEGACY, client_assertion_type: ASSERTION_TYPE, client_assertion: await asserting.assertion(tether.issuer),
    }, { dispatcher: tether.dispatcherFor() });

    // oidc-provider records the assertion's jti (replay detection, in oidc_payloads) after it has
    // found the client and before Tether's grant runs: a lock on that table holds the request there.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => { release = resolve; });
    let locked: () => void = () => undefined;
    const lockTaken = new Promise<void>((resolve) => { locked = resolve; });
    const holding = knex.transaction(async (trx) => {
      await trx.raw('lock table oidc_payloads in share mode');
      locked();
      await released;
    });
    try {
      await lockTaken;
      const held = request();
      const waiting = async () => ((await knex.raw("select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'oidc_payloads' and not l.granted")) as { rows: { n: number }[] }).rows[0]!.n;
      for (let attempt = 0; (await waiting()) === 0 && attempt < 500; attempt += 1) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await waiting()).toBe(1);

      const withoutHeld = current();
      withoutHeld.clients = withoutHeld.clients.filter((client) => client.id !== 'held-client');
      await tether.app.reconfigure(parseConfig(withoutHeld));
      const after = await request();
      expect({ status: after.status, error: after.body.error }).toEqual({ status: 401, error: 'invalid_client' });

      release();
      await holding;
      const answer = await held;
      expect({ status: answer.status, tokenType: answer.body.token_type }).toEqual({ status: 200, tokenType: 'Bearer' });
    } finally {
      release();
      await holding;
    }
  });
});

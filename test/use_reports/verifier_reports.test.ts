import { Writable } from 'node:stream';
import { fetch } from 'undici';
import { tokensShow } from '../../src/cli/tokens_commands.js';
import { FOREIGN_AUDIENCE } from '../../src/testing/token_factory.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { USE_REFUSAL_REASONS, type UseReporter } from '../../src/resource_server/index.js';
import { startTestTether } from '../support/tether.js';
import { ORDERS, PAYMENTS, ordersReporter, startOrdersApi, useReportsConfig, type RunningApi } from './support.js';

// End to end: a real Tether, a real orders API whose verifier reports every outcome through the
// package's reporter (authenticated with orders-api's certificate-bound token), the harness's
// catalogue of tokens that are wrong in one way each, and the rows that land in use_events.

const DEV_SECRET = 'dev-credential-for-use-reports-0123456789';

let tether: RunningTether;
let reporter: UseReporter;
let api: RunningApi;

beforeAll(async () => {
  tether = await startTestTether({ config: useReportsConfig(), adminDevSecret: DEV_SECRET });
  reporter = await ordersReporter(tether);
  api = await startOrdersApi(tether, reporter);
});

afterAll(async () => {
  await reporter?.close();
  await api?.close();
  await tether?.close();
});

interface UseRow {
  outcome: string;
  reason: string | null;
  code: string | null;
  token_id: string | null;
  client_id: string | null;
  token_audience: string | null;
  scopes_required: string;
  binding_method: string | null;
  token_state: string;
  count: number;
  reporter_client_id: string;
  resource: string;
}

const useRows = async () => (await tether.database.knex('use_events').orderBy('id')) as UseRow[];

describe('every refusal the verifier can make reaches use_events with its reason', () => {
  let rows: UseRow[];
  let probed: { mtls: Record<string, string>; dpop: Record<string, string> };

  beforeAll(async () => {
    const verdicts = (report: Awaited<ReturnType<RunningTether['probe']>>) => Object.fromEntries(report.results.map((result) => [result.id, result.verdict]));
    const mtls = await tether.probe({ url: api.url, client: 'mtls-client', resource: ORDERS, scope: 'orders:read', otherResource: PAYMENTS });
    const dpop = await tether.probe({ url: api.url, client: 'dpop-client', resource: ORDERS, scope: 'orders:read', otherResource: PAYMENTS });
    probed = { mtls: verdicts(mtls), dpop: verdicts(dpop) };
    // Anonymous, and a token that is not a JWT at all.
    const agent = tether.dispatcherFor();
    expect((await fetch(api.url, { dispatcher: agent })).status).toBe(401);
    expect((await fetch(api.url, { dispatcher: agent, headers: { authorization: 'Bearer not-a-jwt' } })).status).toBe(401);
    await reporter.flush();
    rows = await useRows();
  });

  test('the probe passes every check against the reporting API (reporting changes no answer)', () => {
    expect(Object.values(probed.mtls).filter((verdict) => verdict === 'fail')).toEqual([]);
    expect(Object.values(probed.dpop).filter((verdict) => verdict === 'fail')).toEqual([]);
  });

  test('each reason the verifier produces has a row, with the verifier\'s code', () => {
    const codesOf = (reason: string) => [...new Set(rows.filter((row) => row.reason === reason).map((row) => row.code))].sort();
    expect(codesOf('wrong_audience')).toEqual(['ERR_TOKEN_AUDIENCE']);
    expect(codesOf('expired')).toEqual(['ERR_TOKEN_EXPIRED']);
    expect(codesOf('not_yet_valid')).toEqual(['ERR_TOKEN_NOT_YET_VALID']);
    expect(codesOf('revoked')).toEqual(['ERR_TOKEN_REVOKED']);
    expect(codesOf('unknown_issuer')).toEqual(['ERR_TOKEN_ISSUER']);
    expect(codesOf('bad_signature')).toEqual(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_TOKEN_ALGORITHM', 'ERR_TOKEN_SIGNATURE']);
    expect(codesOf('malformed')).toEqual(['ERR_TOKEN_MALFORMED', 'ERR_TOKEN_TYPE']);
    expect(codesOf('insufficient_scope')).toEqual(['ERR_TOKEN_SCOPE']);
    expect(codesOf('binding_mismatch')).toEqual(['ERR_CERTIFICATE_MISMATCH', 'ERR_CERTIFICATE_MISSING', 'ERR_DPOP_BOUND_TOKEN_AS_BEARER', 'ERR_DPOP_KEY_MISMATCH', 'ERR_DPOP_NOT_BOUND', 'ERR_TOKEN_UNBOUND']);
    expect(codesOf('replayed_proof')).toEqual(['ERR_DPOP_PROOF_REPLAYED']);
    expect(codesOf('bad_proof')).toEqual(['ERR_DPOP_PROOF_ATH', 'ERR_DPOP_PROOF_HTM', 'ERR_DPOP_PROOF_HTU']);
    expect(codesOf('no_credentials')).toEqual(['ERR_NO_CREDENTIALS']);
    const seen = new Set(rows.map((row) => row.reason).filter((reason) => reason !== null));
    // `unavailable` (the issuer or the replay store down) has its own test below.
    expect(USE_REFUSAL_REASONS.filter((reason) => !seen.has(reason))).toEqual(['unavailable']);
  });

  test('a refused token is named by what it claimed: jti, client, and the audience when it is not this API\'s', () => {
    const audiences = rows.filter((row) => row.reason === 'wrong_audience').map((row) => row.token_audience).sort();
    expect(audiences).toEqual([PAYMENTS, PAYMENTS, FOREIGN_AUDIENCE, FOREIGN_AUDIENCE].sort());
    for (const row of rows.filter((candidate) => candidate.reason === 'wrong_audience' || candidate.reason === 'expired')) {
      expect(row.token_id).toMatch(/^[\w-]{8,}$/);
      expect(['mtls-client', 'dpop-client']).toContain(row.client_id);
    }
    // A token for this API carries no token_audience.
    expect(rows.filter((row) => row.reason === 'expired').every((row) => row.token_audience === null)).toBe(true);
    // Nothing to name: no token, or not a JWT.
    const unnamed = rows.filter((row) => row.code === 'ERR_NO_CREDENTIALS' || row.code === 'ERR_TOKEN_MALFORMED');
    expect(unnamed.map((row) => [row.token_id, row.client_id, row.token_state])).toEqual(unnamed.map(() => [null, null, 'unknown']));
  });

  test('a revoked token still presented is recorded with its state in Tether: revoked', () => {
    const revoked = rows.filter((row) => row.reason === 'revoked');
    expect(revoked.map((row) => row.token_state)).toEqual(['revoked', 'revoked']);
  });

  test('accepted presentations: the verified token, the route\'s scopes, the binding, reported by orders-api for ORDERS', () => {
    const accepted = rows.filter((row) => row.outcome === 'accepted');
    expect(accepted.map((row) => [row.client_id, row.scopes_required, row.binding_method, row.token_state]).sort()).toEqual([
      ['dpop-client', 'orders:read', 'dpop', 'active'],
      ['mtls-client', 'orders:read', 'mtls', 'active'],
    ]);
    expect(new Set(rows.map((row) => `${row.reporter_client_id} ${row.resource}`))).toEqual(new Set([`orders-api ${ORDERS}`]));
  });

  test('no token, proof or certificate is in the table: ids only', () => {
    const text = JSON.stringify(rows);
    // Every JWS (token or proof) starts with the base64url of '{"' : eyJ.
    expect(text).not.toMatch(/eyJ/);
    expect(text).not.toMatch(/BEGIN CERTIFICATE|not-a-jwt/);
  });

  test('the reporter counted every presentation as sent and dropped none', () => {
    const stats = reporter.stats();
    expect(stats).toMatchObject({ queued: 0, dropped: 0, failedBatches: 0 });
    expect(stats.sent).toBe(rows.reduce((sum, row) => sum + row.count, 0));
  });
});

describe('an accepted use at the API', () => {
  test('moves last_used_at forward and appears in tokens show, its --json and the admin API\'s token detail', async () => {
    const token = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
    const jti = token.claims!.jti!;
    const call = tether.fetchWith(token);
    for (let round = 0; round < 3; round += 1) expect((await call(api.url)).status).toBe(200);
    await reporter.flush();

    const [issued] = await tether.database.knex('issued_tokens').where({ token_id: jti }).select('last_used_at');
    expect(issued.last_used_at).toBeInstanceOf(Date);
    // Three identical presentations in one batch: one row, count 3.
    const rows = (await useRows()).filter((row) => row.token_id === jti);
    expect(rows.map((row) => [row.outcome, row.count])).toEqual([['accepted', 3]]);

    const out: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _encoding, done) { out.push(chunk.toString()); done(); } });
    const context = { knex: tether.database.knex, config: tether.config, out: sink, actor: 'test', facts: { requestId: 'test', sourceAddress: undefined, instanceId: 'test' } };
    await tokensShow(context as never, jti);
    expect(out.join('')).toMatch(new RegExp(`uses \\(reported by APIs\\)\\n.*RESOURCE.*\\n${ORDERS.replace(/\./g, '\\.')}\\s+accepted\\s+-\\s+3\\s`));
    expect(out.join('')).not.toMatch(/last used\s+-/);

    const detail = await fetch(`${tether.issuer}/admin/api/tokens/${jti}`, { headers: { authorization: `Bearer ${DEV_SECRET}` }, dispatcher: tether.dispatcherFor() });
    expect(detail.status).toBe(200);
    const body = await detail.json() as { last_used_at: string; uses: unknown[] };
    expect(body.last_used_at).toBe((issued.last_used_at as Date).toISOString());
    expect(body.uses).toEqual([{ resource: ORDERS, outcome: 'accepted', reason: null, count: 3, first_at: expect.any(String), last_at: body.last_used_at }]);
  });
});

describe('the issuer unreachable', () => {
  test('a verifier that cannot reach the introspection endpoint refuses with 503 and reports reason unavailable', async () => {
    const localReporter = await ordersReporter(tether);
    const down = await startOrdersApi(tether, localReporter, {
      revocation: { introspect: { endpoint: 'https://127.0.0.1:1/introspect', clientAuth: { method: 'tls_client_auth', clientId: 'orders-api' } } },
    });
    try {
      const token = await tether.token({ client: 'mtls-client', resource: ORDERS, scope: 'orders:read' });
      expect((await tether.fetchWith(token)(down.url)).status).toBe(503);
      await localReporter.flush();
      const rows = (await useRows()).filter((row) => row.token_id === token.claims!.jti);
      expect(rows.map((row) => [row.outcome, row.reason, row.code, row.token_state])).toEqual([['refused', 'unavailable', 'ERR_REVOCATION_UNAVAILABLE', 'active']]);
    } finally {
      await localReporter.close();
      await down.close();
    }
  });
});

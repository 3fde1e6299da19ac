import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import { openTestDatabase } from '../support/database.js';
import { freePort, startNginx, type RunningNginx } from '../support/nginx.js';
import { rawRequest, type RawResponse } from '../support/raw_request.js';
import { basicAuth } from '../support/tether.js';
import { runTetherProcess, waitFor, waitUntilListening, type TetherProcess } from '../support/tether_process.js';
import { startFreezableProxy, type FreezableProxy } from '../storage/freezable_proxy.js';

/**
 * Issue 13 item 6: a fleet as production runs it. Three `tether start` processes on one PostgreSQL
 * database (each through a TCP proxy the test can freeze), behind a real nginx (TLS, round-robin
 * upstream, loopback). Under steady, bounded load — client_credentials, token exchange,
 * introspection and revocation, each request on a new connection — the operator's procedures of
 * docs/operations.md run one after the other:
 *   1. `tether keys rotate` (a new key is published at once and signs after the publication delay);
 *   2. a rolling restart: each instance drained from nginx (marked `down`, nginx reloaded), stopped
 *      with SIGTERM, started again, put back;
 *   3. a rolling configuration reload: a changed file, SIGHUP to each instance in turn;
 *   4. the database frozen for a few seconds (the proxy forwards nothing; the server itself is
 *      never stopped: other tests share it).
 * Counted, and asserted exactly: valid tokens refused by introspection or exchange (0), 500s and
 * other 5xx but 503 (0), tokens delivered without their ledger record (0), 503s outside the freeze
 * (0), requests that failed without an answer (0).
 */

const ORDERS = 'https://orders.fleet.test';
const INVENTORY = 'https://inventory.fleet.test';
const CALLER_SECRET = 'fleet-caller-secret-0123456789abcdef';
const ORDERS_API_SECRET = 'fleet-orders-api-secret-0123456789ab';
const NEWCOMER_SECRET = 'fleet-newcomer-secret-0123456789abcd';
const ENCRYPTION_SECRET = 'fleet-test-key-encryption-secret-0123456789';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** nginx reaches Tether from this address, the one trusted proxy. */
const NGINX_HOP = '127.0.0.2';
const SIZE = 3;
const FREEZE_MS = 4000;
/** One request every INTERVAL_MS, at most MAX_IN_FLIGHT at once (a tick with that many waiting sends nothing). */
const INTERVAL_MS = 40;
const MAX_IN_FLIGHT = 48;

const onPostgres = Boolean(process.env.DATABASE_URL);

type Kind = 'token' | 'exchange' | 'introspect' | 'revoke';

interface Outcome {
  kind: Kind;
  startedAt: number;
  endedAt?: number;
  status?: number;
  error?: unknown;
  active?: unknown;
  failure?: string;
  /** A delivered token: its ledger id and the event that must record it. */
  delivered?: { id: string; event: 'token.issued' | 'token.exchanged' };
}

function configText(nginxPort: number, version: 1 | 2): string {
  const secretClient = (id: string, secret: string, rest: string) =>
    `  - { id: ${id}, owner: team-fleet, purpose: fleet test, binding: dpop, auth: { method: client_secret_basic, secret: "${secret}" }${rest} }`;
  return [
    `issuer: https://localhost:${nginxPort}`,
    'listeners: { http: { port: 0 } }',
    `trustedProxies: [${NGINX_HOP}]`,
    // Short waits, so that a frozen database becomes 503 within a couple of seconds.
    'database: { statementTimeout: 1s, acquireTimeout: 1s, connectTimeout: 1s, readinessTimeout: 500ms, queueLimit: 64 }',
    // Verifiers are assumed to cache the JWKS for 1 s; a new key signs 2 s after it is published.
    'signing: { verifierJwksMaxAge: 1, publicationDelay: 2, reloadInterval: 5, unknownKidCooldown: 1 }',
    'resources:',
    `  - { uri: "${ORDERS}", scopes: [read], lifetime: 600, introspectors: [orders-api] }`,
    `  - { uri: "${INVENTORY}", scopes: [read], lifetime: ${version === 1 ? 300 : 240}, introspectors: [orders-api] }`,
    'clients:',
    secretClient('caller', CALLER_SECRET, `, resources: { "${ORDERS}": [read] }, exchange: { targets: { "${INVENTORY}": [read] } }`),
    secretClient('orders-api', ORDERS_API_SECRET, ''),
    ...(version === 2 ? [secretClient('newcomer', NEWCOMER_SECRET, `, resources: { "${ORDERS}": [read] }`)] : []),
    '',
  ].join('\n');
}

function nginxHttp(directory: string, nginxPort: number, upstreams: { port: number; down: boolean }[]): string {
  return `
  upstream tether {
    ${upstreams.map(({ port, down }) => `server 127.0.0.1:${port}${down ? ' down' : ''};`).join('\n    ')}
  }
  server {
    listen 127.0.0.1:${nginxPort} ssl;
    server_name localhost;
    ssl_certificate ${directory}/server.pem;
    ssl_certificate_key ${directory}/server.key.pem;
    location / {
      proxy_pass http://tether;
      proxy_http_version 1.1;
      proxy_bind ${NGINX_HOP};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host "";
      proxy_set_header Forwarded "";
      proxy_set_header Client-Cert "";
    }
  }`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

(onPostgres ? describe : describe.skip)('a fleet of three tether start processes behind nginx, on one PostgreSQL', () => {
  let workdir: string;
  let pki: Pki;
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let proxy: FreezableProxy;
  let nginx: RunningNginx;
  let nginxPort: number;
  const ports: number[] = [];
  const instances: TetherProcess[] = [];
  const upstreams: { port: number; down: boolean }[] = [];
  let configFile: string;
  let callerKey: DpopKey;
  let newcomerKey: DpopKey;

  const issuer = () => `https://localhost:${nginxPort}`;
  const instanceEnv = (index: number) => ({
    DATABASE_URL: proxy.proxiedUrl(database.url!), TETHER_HTTP_PORT: String(ports[index]), TETHER_KEY_ENCRYPTION_SECRET: ENCRYPTION_SECRET,
  });
  const startInstance = async (index: number) => {
    const run = runTetherProcess(['start', '--config', configFile], instanceEnv(index), workdir);
    instances[index] = run;
    await waitUntilListening(run);
  };
  const setNginx = () => nginx.reconfigure((directory) => nginxHttp(directory, nginxPort, upstreams));

  beforeAll(async () => {
    workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-fleet-'));
    database = await openTestDatabase();
    const target = new URL(database.url!);
    proxy = await startFreezableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    pki = await createEphemeralPki();
    nginxPort = await freePort();
    for (let index = 0; index < SIZE; index += 1) {
      ports.push(await freePort());
      upstreams.push({ port: ports[index]!, down: false });
    }
    configFile = path.join(workdir, 'tether.config.yaml');
    await writeFile(configFile, configText(nginxPort, 1));
    // The first start migrates; the others start once it has.
    await startInstance(0);
    await Promise.all([1, 2].map((index) => startInstance(index)));
    nginx = await startNginx({
      files: { 'server.pem': pki.server.certificatePem, 'server.key.pem': pki.server.privateKeyPem },
      http: (directory) => nginxHttp(directory, nginxPort, upstreams),
      waitForPorts: [nginxPort],
    });
    [callerKey, newcomerKey] = await Promise.all([createDpopKey(), createDpopKey()]);
  });

  afterAll(async () => {
    proxy?.thaw();
    const codes = await Promise.all(instances.map((instance) => instance?.stop()));
    await nginx?.stop();
    await proxy?.close();
    await database?.close();
    if (workdir) await rm(workdir, { recursive: true, force: true });
    expect(codes.filter((code) => code !== 0)).toEqual([]);
  });

  function post(target: string, form: Record<string, string>, headers: Record<string, string>): Promise<RawResponse> {
    return rawRequest({
      connectTo: `https://127.0.0.1:${nginxPort}`, target, ca: pki.ca.certificatePem, form,
      headers: { host: `localhost:${nginxPort}`, accept: 'application/json', ...headers },
    });
  }

  async function tokenRequest(clientId: string, secret: string, key: DpopKey): Promise<RawResponse> {
    return post('/token', { grant_type: 'client_credentials', resource: ORDERS, scope: 'read' }, {
      authorization: basicAuth(clientId, secret), dpop: await dpopProof(key, { htm: 'POST', htu: `${issuer()}/token` }),
    });
  }

  test('key rotation, rolling restart, rolling reload and a database freeze under load: no valid token refused, no 500, no token without its record, 503 only while the database is frozen', async () => {
    const outcomes: Outcome[] = [];
    /** Live tokens for introspection and exchange, and tokens set aside to be revoked (never used otherwise). */
    const live: string[] = [];
    const toRevoke: string[] = [];
    const revoked: string[] = [];
    const kids = new Set<string>();
    let inFlight = 0;
    let skipped = 0;
    let stopping = false;

    async function send(kind: Kind, outcome: Outcome): Promise<void> {
      if (kind === 'token') {
        const { status, body } = await tokenRequest('caller', CALLER_SECRET, callerKey);
        Object.assign(outcome, { status, error: body.error });
        const token = body.access_token as string | undefined;
        if (token) {
          outcome.delivered = { id: decodeJwt(token).jti!, event: 'token.issued' };
          kids.add(decodeProtectedHeader(token).kid!);
          (outcomes.filter((o) => o.delivered).length % 3 === 0 ? toRevoke : live).push(token);
        }
        return;
      }
      if (kind === 'exchange') {
        const subject = live[Math.floor(Math.random() * live.length)]!;
        const { status, body } = await post('/token', {
          grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: INVENTORY, scope: 'read',
        }, { authorization: basicAuth('caller', CALLER_SECRET), dpop: await dpopProof(callerKey, { htm: 'POST', htu: `${issuer()}/token` }) });
        Object.assign(outcome, { status, error: body.error });
        if (body.access_token) outcome.delivered = { id: decodeJwt(body.access_token as string).jti!, event: 'token.exchanged' };
        return;
      }
      if (kind === 'introspect') {
        const token = live[Math.floor(Math.random() * live.length)]!;
        const { status, body } = await post('/token/introspection', { token }, { authorization: basicAuth('orders-api', ORDERS_API_SECRET) });
        Object.assign(outcome, { status, error: body.error, active: body.active });
        return;
      }
      const token = toRevoke.shift()!;
      const { status, body } = await post('/token/revocation', { token }, { authorization: basicAuth('caller', CALLER_SECRET) });
      Object.assign(outcome, { status, error: body.error });
      // A revocation answered 503 may not have happened: the token is neither live nor known revoked.
      if (status === 200) revoked.push(token);
    }

    function next(n: number): Kind {
      const kind = (['token', 'exchange', 'token', 'introspect', 'revoke'] as const)[n % 5]!;
      if ((kind === 'exchange' || kind === 'introspect') && live.length === 0) return 'token';
      if (kind === 'revoke' && toRevoke.length === 0) return 'token';
      return kind;
    }

    const running: Promise<void>[] = [];
    const ticking = (async () => {
      // Bounded by count (about 4 minutes of ticks) as well as by the procedure below.
      for (let n = 0; n < 6000 && !stopping; n += 1) {
        if (inFlight >= MAX_IN_FLIGHT) {
          skipped += 1;
        } else {
          const outcome: Outcome = { kind: next(n), startedAt: performance.now() };
          outcomes.push(outcome);
          inFlight += 1;
          running.push(send(outcome.kind, outcome).catch((error: unknown) => { outcome.failure = String(error); }).finally(() => {
            outcome.endedAt = performance.now();
            inFlight -= 1;
          }));
        }
        await sleep(INTERVAL_MS);
      }
    })();
    const answered = () => outcomes.filter((outcome) => outcome.status === 200).length;
    const steady = async (count: number) => {
      const target = answered() + count;
      await waitFor(() => answered() >= target, `${count} more answers`, 120_000);
    };
    const phases: Record<string, number> = {};
    const mark = (name: string) => { phases[name] = outcomes.length; };

    await steady(20);

    // 1. Rotation, as the operator runs it.
    mark('rotate');
    const rotate = runTetherProcess(['keys', 'rotate', '--config', configFile], { DATABASE_URL: database.url, TETHER_KEY_ENCRYPTION_SECRET: ENCRYPTION_SECRET, TETHER_LOG_LEVEL: 'warn' }, workdir);
    expect(await rotate.exited).toBe(0);
    await waitFor(() => kids.size >= 2, 'tokens signed with the new key', 120_000);
    await steady(20);

    // 2. Rolling restart: drain from nginx, stop, start, put back; one instance at a time.
    for (let index = 0; index < SIZE; index += 1) {
      mark(`restart ${index}`);
      upstreams[index]!.down = true;
      await setNginx();
      expect(await instances[index]!.stop()).toBe(0);
      await startInstance(index);
      upstreams[index]!.down = false;
      await setNginx();
      await steady(10);
    }

    // 3. Rolling reload: a changed file (a new client, a shorter exchange lifetime), SIGHUP one by one.
    mark('reload');
    await writeFile(configFile, configText(nginxPort, 2));
    for (const instance of instances) {
      const before = instance.logged(/^configuration reload/).length;
      instance.signal('SIGHUP');
      await waitFor(() => instance.logged(/^configuration reload/).length > before, 'the reload to be logged');
      expect(instance.logged(/^configuration reload/).at(-1)).toMatchObject({ msg: 'configuration reloaded', needsRestart: [] });
      await steady(5);
    }
    // Every instance knows the new client now (round robin: each of SIZE × 2 requests reaches one).
    const newcomer = await Promise.all(Array.from({ length: SIZE * 2 }, () => tokenRequest('newcomer', NEWCOMER_SECRET, newcomerKey)));
    expect(newcomer.map((response) => response.status)).toEqual(Array(SIZE * 2).fill(200));

    // 4. The database frozen for a few seconds.
    await steady(10);
    mark('freeze');
    proxy.freeze();
    const frozenAt = performance.now();
    await sleep(FREEZE_MS);
    const thawedAt = performance.now();
    proxy.thaw();
    mark('thaw');
    await steady(40);

    stopping = true;
    await ticking;
    await Promise.all(running);

    // What was refused, and what must not have been.
    const overlapsFreeze = (outcome: Outcome) => outcome.startedAt <= thawedAt && (outcome.endedAt ?? Infinity) >= frozenAt;
    const refusedValid = outcomes.filter((outcome) => (outcome.kind === 'introspect' && outcome.status === 200 && outcome.active !== true)
      || (outcome.kind === 'exchange' && outcome.status !== undefined && outcome.status >= 400 && outcome.status < 500));
    const serverErrors = outcomes.filter((outcome) => outcome.status !== undefined && outcome.status >= 500 && outcome.status !== 503);
    const unavailable = outcomes.filter((outcome) => outcome.status === 503);
    const unavailableOutsideFreeze = unavailable.filter((outcome) => !overlapsFreeze(outcome));
    const otherRefusals = outcomes.filter((outcome) => outcome.status !== undefined && outcome.status !== 200 && outcome.status !== 503 && outcome.kind !== 'exchange');
    const failures = outcomes.filter((outcome) => outcome.failure !== undefined);
    const deliveredTokens = outcomes.flatMap((outcome) => (outcome.delivered ? [outcome.delivered] : []));
    const recorded = new Set<string>();
    for (let offset = 0; offset < deliveredTokens.length; offset += 500) {
      const rows = await database.knex('ledger_events').whereIn('token_id', deliveredTokens.slice(offset, offset + 500).map((token) => token.id))
        .whereIn('type', ['token.issued', 'token.exchanged']).select('token_id', 'type');
      for (const row of rows) recorded.add(`${row.type as string} ${row.token_id as string}`);
    }
    const unrecorded = deliveredTokens.filter((token) => !recorded.has(`${token.event} ${token.id}`));
    // Every token revoked under load is inactive now, on whichever instance answers.
    const stillActive: string[] = [];
    for (const token of revoked) {
      const { body } = await post('/token/introspection', { token }, { authorization: basicAuth('orders-api', ORDERS_API_SECRET) });
      if (body.active !== false) stillActive.push(decodeJwt(token).jti!);
    }
    const counts: Record<string, number> = {};
    for (const outcome of outcomes) {
      const key = `${outcome.kind} ${outcome.status ?? 'no answer'}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    const figures = {
      requests: outcomes.length,
      byKindAndStatus: counts,
      skippedTicks: skipped,
      tokensDelivered: deliveredTokens.length,
      signingKeysSeen: kids.size,
      revokedUnderLoad: revoked.length,
      validTokensRefused: refusedValid.length,
      serverErrors: serverErrors.length,
      tokensWithoutLedgerRecord: unrecorded.length,
      unavailableDuringFreeze: unavailable.length - unavailableOutsideFreeze.length,
      unavailableOutsideFreeze: unavailableOutsideFreeze.length,
      failedWithoutAnswer: failures.length,
      revokedStillActive: stillActive.length,
      requestsPerPhase: phases,
    };
    process.stdout.write(`fleet figures: ${JSON.stringify(figures)}\n`);

    const brief = (list: Outcome[]) => list.map(({ kind, status, error, active, failure }) => ({ kind, status, error, active, failure }));
    expect(brief(refusedValid)).toEqual([]);
    expect(brief(serverErrors)).toEqual([]);
    expect(brief(otherRefusals)).toEqual([]);
    expect(brief(failures)).toEqual([]);
    expect(unrecorded).toEqual([]);
    expect(brief(unavailableOutsideFreeze)).toEqual([]);
    expect(stillActive).toEqual([]);
    // The freeze was felt (503s), the rotation happened (two keys signed), and each kind of request ran.
    expect(unavailable.length).toBeGreaterThan(0);
    expect(kids.size).toBe(2);
    for (const kind of ['token', 'exchange', 'introspect', 'revoke'] as const) expect(counts[`${kind} 200`]).toBeGreaterThan(10);
  });
});

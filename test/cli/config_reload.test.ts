import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { Agent, fetch } from 'undici';
import { ConfigError, loadConfigFile } from '../../src/config/load_config.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import type { Database } from '../../src/storage/database.js';
import { openTestDatabase } from '../support/database.js';
import { freePort } from '../support/nginx.js';
import { postForm } from '../support/tether.js';
import { runTetherProcess, waitFor, waitUntilListening, type TetherProcess } from '../support/tether_process.js';

// SIGHUP to a real Tether process (issue 13 item 5): `tether start` on PostgreSQL when the run has
// one, `tether dev` with the same file on PGlite otherwise (the reload is the same code; `tether
// start` refuses PGlite). One process for the file; each test changes the file and sends SIGHUP.

const onPostgres = Boolean(process.env.DATABASE_URL);
const ORDERS = 'https://orders.reload.test';
const INVOICES = 'https://invoices.reload.test';
const CLIENTS = ['worker', 'retired', 'newcomer'] as const;

let workdir: string;
let pki: Pki;
let database: (Database & { url?: string }) | undefined;
let tether: TetherProcess;
let port: number;
let httpPort: number;
let configFile: string;
const agents = new Map<string, Agent>();

interface Version {
  /** The orders resource's scopes and lifetime. */
  ordersScopes: string[];
  lifetime: number;
  /** Client id → scopes at ORDERS. */
  clients: Partial<Record<(typeof CLIENTS)[number], string[]>>;
  /** A restart-only change: the plain HTTP listener's port. */
  httpPort?: number;
  /** Lines appended verbatim (mistakes). */
  extra?: string[];
}

function configText(version: Version): string {
  const clients = Object.entries(version.clients).map(([id, scopes]) =>
    `  - { id: ${id}, owner: team-reload, purpose: reload tests, binding: mtls, auth: { method: tls_client_auth, subjectDn: "CN=${id}" }, resources: { "${ORDERS}": [${scopes.join(', ')}] } }`);
  return [
    `issuer: https://localhost:${port}`,
    `listeners: { https: { port: ${port}, certFile: server.pem, keyFile: server.key.pem, clientCaFile: ca.pem }, http: { port: ${version.httpPort ?? httpPort} } }`,
    'signing: { allowPlaintextKeys: true }',
    'resources:',
    `  - { uri: "${ORDERS}", scopes: [${version.ordersScopes.join(', ')}], lifetime: ${version.lifetime} }`,
    `  - { uri: "${INVOICES}", scopes: [read] }`,
    'clients:',
    ...clients,
    ...(version.extra ?? []),
    '',
  ].join('\n');
}

const FIRST: Version = { ordersScopes: ['read'], lifetime: 300, clients: { worker: ['read'], retired: ['read'] } };
const SECOND: Version = { ordersScopes: ['read', 'write'], lifetime: 240, clients: { worker: ['read', 'write'], newcomer: ['read'] } };

function agentOf(clientId: string): Agent {
  let agent = agents.get(clientId);
  if (!agent) {
    const certificate = pki.clients[clientId]!;
    agent = new Agent({ connect: { ca: pki.ca.certificatePem, cert: certificate.certificatePem, key: certificate.privateKeyPem } });
    agents.set(clientId, agent);
  }
  return agent;
}

function token(clientId: string, scope?: string) {
  return postForm(`https://localhost:${port}/token`, {
    grant_type: 'client_credentials', client_id: clientId, resource: ORDERS, ...(scope ? { scope } : {}),
  }, { dispatcher: agentOf(clientId) });
}

/** Writes `version`, sends SIGHUP, and waits for the reload's log line (applied or refused). */
async function reloadWith(text: string): Promise<Record<string, unknown>> {
  await writeFile(configFile, text);
  const before = tether.logged(/^configuration reload/).length;
  tether.signal('SIGHUP');
  await waitFor(() => tether.logged(/^configuration reload/).length > before, 'the reload to be logged');
  return tether.logged(/^configuration reload/)[before]!;
}

beforeAll(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-reload-'));
  pki = await createEphemeralPki({ clientNames: [...CLIENTS] });
  await writeFile(path.join(workdir, 'server.pem'), pki.server.certificatePem);
  await writeFile(path.join(workdir, 'server.key.pem'), pki.server.privateKeyPem);
  await writeFile(path.join(workdir, 'ca.pem'), pki.ca.certificatePem);
  port = await freePort();
  httpPort = await freePort();
  configFile = path.join(workdir, 'tether.config.yaml');
  await writeFile(configFile, configText(FIRST));
  database = onPostgres ? await openTestDatabase() : undefined;
  tether = runTetherProcess([onPostgres ? 'start' : 'dev', '--config', 'tether.config.yaml'], { DATABASE_URL: database?.url }, workdir);
  await waitUntilListening(tether);
});

afterAll(async () => {
  await Promise.all([...agents.values()].map((agent) => agent.close()));
  if (tether) expect(await tether.stop()).toBe(0);
  await database?.close();
  await rm(workdir, { recursive: true, force: true });
});

describe('SIGHUP reloads the configuration file', () => {
  test('before: worker and retired get tokens, newcomer is unknown', async () => {
    expect((await token('worker', 'read')).status).toBe(200);
    expect((await token('retired')).status).toBe(200);
    const unknown = await token('newcomer');
    expect({ status: unknown.status, error: unknown.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    expect((await token('worker', 'write')).body.error).toBe('invalid_scope');
  });

  test('a changed file applies: a new client gets a token, a removed one is invalid_client, changed scopes and lifetime apply; a changed port is reported as needing a restart', async () => {
    const newHttpPort = await freePort();
    const logged = await reloadWith(configText({ ...SECOND, httpPort: newHttpPort }));
    expect(logged).toMatchObject({ msg: 'configuration reloaded', level: 40, generation: 2, clients: 2, resources: 2, needsRestart: ['listeners.http.port'] });

    const newcomer = await token('newcomer');
    expect(newcomer.status).toBe(200);
    expect(decodeJwt(newcomer.body.access_token as string)).toMatchObject({ client_id: 'newcomer', aud: ORDERS, scope: 'read' });

    const retired = await token('retired');
    expect({ status: retired.status, error: retired.body.error }).toEqual({ status: 401, error: 'invalid_client' });

    const written = await token('worker', 'read write');
    expect(written.status).toBe(200);
    const claims = decodeJwt(written.body.access_token as string);
    expect({ scope: claims.scope, lifetime: claims.exp! - claims.iat! }).toEqual({ scope: 'read write', lifetime: 240 });

    // The listener stays where it was until a restart.
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
  });

  test('an invalid file is refused with the messages `tether start` prints for it, all at once; the running configuration stays', async () => {
    const text = configText({
      ...SECOND,
      // Two mistakes in one entry: both are reported.
      extra: ['  - { id: "bad id", owner: o, purpose: p, binding: magic, auth: { method: tls_client_auth, subjectDn: "CN=broken" } }'],
    });
    const logged = await reloadWith(text);
    // What the start of a process would print for this file (the process was given the file's relative name).
    const atStart = await loadConfigFile(configFile).then(() => undefined, (error: unknown) => error);
    expect(atStart).toBeInstanceOf(ConfigError);
    const relative = (text: string) => text.replaceAll(`${workdir}/`, '');
    const { message, problems } = atStart as ConfigError;
    expect(logged).toMatchObject({ msg: 'configuration reload refused; still running generation 2', generation: 2, error: relative(message), problems: problems.map(relative) });
    expect(logged.level).toBe(50);
    expect(problems).toEqual([
      expect.stringMatching(/tether\.config\.yaml: clients\[2\]\.id: /), expect.stringMatching(/tether\.config\.yaml: clients\[2\]\.binding: .*\(got "magic"\)$/),
    ]);

    // Still generation 2: newcomer in, retired out.
    expect((await token('newcomer')).status).toBe(200);
    expect((await token('retired')).body.error).toBe('invalid_client');
    expect(tether.child.exitCode).toBeNull();
  });

  test('requests in flight during reloads all complete: steady load on keep-alive connections through six reloads, no failure, no connection dropped', async () => {
    const outcomes: { status: number | undefined; failure?: string; lifetime?: number }[] = [];
    let stopping = false;
    const loop = async (clientId: string) => {
      // Bounded by count as well as by the reloads below.
      for (let n = 0; n < 5000 && !stopping; n += 1) {
        try {
          const { status, body } = await token(clientId);
          const claims = body.access_token ? decodeJwt(body.access_token as string) : undefined;
          outcomes.push({ status, lifetime: claims ? claims.exp! - claims.iat! : undefined });
        } catch (error) {
          outcomes.push({ status: undefined, failure: String(error) });
        }
      }
    };
    // No connection is dropped: the keep-alive connections in use see every reload.
    let disconnects = 0;
    const countDisconnect = () => { disconnects += 1; };
    for (const id of ['worker', 'newcomer']) agentOf(id).on('disconnect', countDisconnect);
    const loops = [loop('worker'), loop('worker'), loop('newcomer'), loop('newcomer')];
    const reloads: Record<string, unknown>[] = [];
    for (let round = 0; round < 6; round += 1) {
      const served = outcomes.length;
      await waitFor(() => outcomes.length >= served + 5, 'requests between reloads');
      reloads.push(await reloadWith(configText({ ...SECOND, lifetime: round % 2 === 0 ? 180 : 240 })));
    }
    const afterLast = outcomes.length;
    await waitFor(() => outcomes.length >= afterLast + 5, 'requests after the last reload');
    stopping = true;
    await Promise.all(loops);
    for (const id of ['worker', 'newcomer']) agentOf(id).off('disconnect', countDisconnect);

    expect(reloads.map((line) => line.msg)).toEqual(Array(6).fill('configuration reloaded'));
    expect(reloads.map((line) => line.generation)).toEqual([3, 4, 5, 6, 7, 8]);
    const failed = outcomes.filter((outcome) => outcome.status !== 200);
    expect({ requests: outcomes.length > 30, failed, disconnects }).toEqual({ requests: true, failed: [], disconnects: 0 });
    // Both configurations served while the load ran; the last one is in force now.
    expect(new Set(outcomes.map((outcome) => outcome.lifetime))).toEqual(new Set([180, 240]));
    const last = decodeJwt((await token('worker')).body.access_token as string);
    expect(last.exp! - last.iat!).toBe(240);
  });
});

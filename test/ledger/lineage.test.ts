import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { decodeJwt } from 'jose';
import { MAX_LINEAGE_DEPTH } from '../../src/ledger/lineage.js';
import { migrationsDirectory } from '../../src/storage/migrate.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm, type TokenResponse } from '../support/tether.js';
import { ARCHIVE, INVOICES, LedgerClient, ORDERS, startLedgerTether } from './ledger_config.js';

/**
 * A token derived from a revoked one is revoked, at every endpoint, whatever its own row says (rows
 * written before revocation was race-free may still say "live"); lineages have a bounded depth; an
 * exchange whose subject token is revoked while it is being recorded is refused with invalid_grant.
 */

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

const jtiOf = (token: string) => decodeJwt(token).jti!;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

function exchangeRequest(clientId: string, subject: string, resource: string): Promise<TokenResponse> {
  return postForm(tether.tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource,
  }, { dispatcher: client.agent(clientId) });
}

async function rejectionOf(response: TokenResponse) {
  return tether.database.knex('ledger_events').where({ type: 'request.rejected', request_id: response.headers.get('x-request-id') }).first();
}

const INVALID_SUBJECT = { error: 'invalid_grant', error_description: 'subject_token is invalid, expired, revoked, or not acceptable for this client' };

describe('a revoked ancestor revokes its descendants', () => {
  test('a child whose own row was never marked is inactive to introspection and refused as a subject token', async () => {
    const root = await client.accessToken('worker', ORDERS);
    const child = await client.exchange('orders-api', root, INVOICES);
    // The parent alone is marked, as a revocation from before the fix could leave it.
    await tether.database.knex('issued_tokens').where({ token_id: jtiOf(root) }).update({ revoked_at: new Date() });
    expect((await tether.database.knex('issued_tokens').where({ token_id: jtiOf(child) }).first()).revoked_at).toBeNull();

    expect((await client.introspectAs('invoices-api', child)).body).toEqual({ active: false });
    const introspected = await tether.database.knex('ledger_events').where({ type: 'token.introspected', token_id: jtiOf(child) }).orderBy('id', 'desc').first();
    expect(introspected.details).toEqual({ active: false, reason: `derived from revoked token ${jtiOf(root)}` });

    const refused = await exchangeRequest('invoices-api', child, ARCHIVE);
    expect({ status: refused.status, body: refused.body }).toEqual({ status: 400, body: INVALID_SUBJECT });
    expect((await rejectionOf(refused)).details).toMatchObject({
      error: 'invalid_grant', reason: `subject token ${jtiOf(child)} descends from revoked token ${jtiOf(root)}`,
    });
  });
});

describe(`a lineage is at most ${MAX_LINEAGE_DEPTH} deep`, () => {
  /** Gives `token` a chain of `count` recorded ancestors (as if exchanged that many times). */
  async function withAncestors(token: string, count: number): Promise<void> {
    const now = Date.now();
    const ids = Array.from({ length: count }, (_, index) => `ancestor-${jtiOf(token)}-${index}`);
    await tether.database.knex('issued_tokens').insert(ids.map((tokenId, index) => ({
      token_id: tokenId, format: 'jwt', client_id: 'worker', subject: 'worker', resource: ORDERS, scope: 'orders:read', binding_method: 'mtls',
      issued_at: new Date(now), expires_at: new Date(now + 600_000), parent_token_id: index === 0 ? null : ids[index - 1],
    })));
    await tether.database.knex('issued_tokens').where({ token_id: jtiOf(token) }).update({ parent_token_id: ids.at(-1) });
  }

  test(`a subject token with ${MAX_LINEAGE_DEPTH - 1} ancestors can still be exchanged`, async () => {
    const subject = await client.accessToken('worker', ORDERS);
    await withAncestors(subject, MAX_LINEAGE_DEPTH - 1);
    const response = await exchangeRequest('orders-api', subject, INVOICES);
    expect(response.status).toBe(200);
    expect((await tether.database.knex('issued_tokens').where({ token_id: jtiOf(response.body.access_token as string) }).first()).parent_token_id).toBe(jtiOf(subject));
  });

  test(`a subject token with ${MAX_LINEAGE_DEPTH} ancestors: 400 invalid_request, no token, recorded`, async () => {
    const subject = await client.accessToken('worker', ORDERS);
    await withAncestors(subject, MAX_LINEAGE_DEPTH);
    const refused = await exchangeRequest('orders-api', subject, INVOICES);
    expect({ status: refused.status, body: refused.body }).toEqual({
      status: 400, body: { error: 'invalid_request', error_description: 'the exchange lineage of the subject token is too long to exchange it again' },
    });
    expect((await rejectionOf(refused)).details).toMatchObject({ error: 'invalid_request', reason: `subject token ${jtiOf(subject)} already has ${MAX_LINEAGE_DEPTH} ancestors` });
    expect(await tether.database.knex('issued_tokens').where({ parent_token_id: jtiOf(subject) })).toEqual([]);
  });
});

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe : describe.skip)('PostgreSQL: the subject token is revoked while its exchange is being recorded', () => {
  test('the exchange waits for the revocation and is refused: 400 invalid_grant, a rejection, no token, no record', async () => {
    const subject = await client.accessToken('worker', ORDERS);
    const { knex } = tether.database;
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => {
      locked = resolve;
    });
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    // A revocation in its first step: the lineage root (the subject itself) locked, not yet marked.
    const revocation = knex.transaction(async (trx) => {
      await trx.raw('SELECT token_id FROM issued_tokens WHERE token_id = ? FOR UPDATE', [jtiOf(subject)]);
      locked();
      await released;
      await trx('issued_tokens').where({ token_id: jtiOf(subject) }).update({ revoked_at: new Date() });
    });
    await lockHeld;
    let answered = false;
    const exchange = exchangeRequest('orders-api', subject, INVOICES).finally(() => {
      answered = true;
    });
    // The exchange passes its early check (the subject is not revoked yet) and waits in the issuance statement.
    let sawIssuanceWaiting = false;
    for (let attempt = 0; attempt < 200 && !sawIssuanceWaiting && !answered; attempt += 1) {
      const waiting = await knex.raw("SELECT count(*)::int AS count FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%jsonb_to_recordset%'");
      sawIssuanceWaiting = waiting.rows[0].count > 0;
      if (!sawIssuanceWaiting) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const answeredWhileLocked = answered;
    release();
    await revocation;
    const refused = await exchange;

    expect({ sawIssuanceWaiting, answeredWhileLocked }).toEqual({ sawIssuanceWaiting: true, answeredWhileLocked: false });
    expect({ status: refused.status, body: refused.body }).toEqual({ status: 400, body: INVALID_SUBJECT });
    expect((await rejectionOf(refused)).details).toMatchObject({ error: 'invalid_grant', reason: `subject token ${jtiOf(subject)} was revoked` });
    expect(await knex('issued_tokens').where({ parent_token_id: jtiOf(subject) })).toEqual([]);
    expect(await knex('ledger_events').where({ type: 'token.exchanged', parent_token_id: jtiOf(subject) })).toEqual([]);
  });
});

describe('migration 0005 repairs lineages left live by the old race', () => {
  test('a live descendant of a revoked token is marked revoked with its event; running it again changes nothing', async () => {
    const root = await client.accessToken('worker', ORDERS);
    const child = await client.exchange('orders-api', root, INVOICES);
    const grandchild = await client.exchange('invoices-api', child, ARCHIVE);
    const bystander = await client.exchange('orders-api', await client.accessToken('worker', ORDERS), INVOICES);
    const { knex } = tether.database;
    await knex('issued_tokens').where({ token_id: jtiOf(root) }).update({ revoked_at: new Date() });

    const migration = path.join(migrationsDirectory(), '0005_revoke_orphaned_descendants.js');
    const { up } = await import(pathToFileURL(migration).href) as { up(knex: unknown): Promise<void> };
    await up(knex);
    await up(knex);

    for (const token of [child, grandchild]) {
      expect((await knex('issued_tokens').where({ token_id: jtiOf(token) }).first()).revoked_at).toBeInstanceOf(Date);
      const events = await knex('ledger_events').where({ type: 'token.revoked', token_id: jtiOf(token) });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor: 'migration:0005', instance_id: 'migration', details: { cascade_from: jtiOf(root) } });
    }
    expect((await knex('issued_tokens').where({ token_id: jtiOf(bystander) }).first()).revoked_at).toBeNull();
  });
});

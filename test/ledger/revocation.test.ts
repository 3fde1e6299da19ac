import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm } from '../support/tether.js';
import { ARCHIVE, INVOICES, LedgerClient, ORDERS, REPORTS, STRANGER_SECRET, startLedgerTether } from './ledger_config.js';

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');
const jtiOf = (token: string) => decodeJwt(token).jti!;

async function tokenRow(tokenId: string) {
  return tether.database.knex('issued_tokens').where({ token_id: tokenId }).first();
}

async function eventsOf(tokenId: string) {
  return tether.database.knex('ledger_events').where({ token_id: tokenId }).orderBy('id');
}

async function lastRejection() {
  return tether.database.knex('ledger_events').where({ type: 'request.rejected' }).orderBy('id', 'desc').first();
}

describe('revocation of JWT access tokens (RFC 7009)', () => {
  test('the token\'s own client revokes it: 200, revoked_at set, one token.revoked event', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const { status, body } = await client.revokeAs('worker', token);
    expect(status).toBe(200);
    expect(body).toEqual({ raw: '' });
    const row = await tokenRow(jtiOf(token));
    expect(row.revoked_at).toBeInstanceOf(Date);
    const events = await eventsOf(jtiOf(token));
    expect(events.map((event) => event.type)).toEqual(['token.issued', 'token.revoked']);
    expect(events[1]).toMatchObject({ client_id: 'worker', actor: 'worker', resource: ORDERS, details: { reason: 'revoked by its client at the revocation endpoint' } });
  });

  test('revoking twice is 200 and changes nothing', async () => {
    const token = await client.accessToken('worker', ORDERS);
    await client.revokeAs('worker', token);
    const { status } = await client.revokeAs('worker', token);
    expect(status).toBe(200);
    expect((await eventsOf(jtiOf(token))).filter((event) => event.type === 'token.revoked')).toHaveLength(1);
  });

  test('another client may not revoke it: 400 invalid_request, the token stays active, the attempt is recorded (RFC 7009 §2.1)', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const { status, body } = await client.revokeAs('orders-api', token);
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_request', error_description: 'client is not authorized to revoke the presented token' });
    expect((await tokenRow(jtiOf(token))).revoked_at).toBeNull();
    expect(await lastRejection()).toMatchObject({
      client_id: 'orders-api', token_id: jtiOf(token), resource: ORDERS,
      details: { route: 'revocation', status: 400, error: 'invalid_request', reason: 'client orders-api asked to revoke a token of client worker', token_client_id: 'worker' },
    });
  });

  test('an invalid or unknown token is answered 200 (RFC 7009 §2.2)', async () => {
    expect((await client.revokeAs('worker', 'not-a-token')).status).toBe(200);
    expect((await client.revokeAs('worker', 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln')).status).toBe(200);
  });

  test('without client authentication: 401 invalid_client, recorded', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const { status, body } = await postForm(client.revocationEndpoint, { token, client_id: 'stranger', client_secret: `${STRANGER_SECRET}x` }, { dispatcher: client.agent() });
    expect(status).toBe(401);
    expect(body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect((await tokenRow(jtiOf(token))).revoked_at).toBeNull();
    expect(await lastRejection()).toMatchObject({ client_id: 'stranger', details: { route: 'revocation', error: 'invalid_client', reason: 'invalid secret provided' } });
  });
});

describe('revocation of opaque access tokens', () => {
  test('its own client revokes it; the ledger row (hashed id) is revoked and introspection says inactive', async () => {
    const token = await client.accessToken('worker', REPORTS);
    expect((await client.introspectAsReportsApi(token)).body.active).toBe(true);
    expect((await client.revokeAs('worker', token)).status).toBe(200);
    expect((await tokenRow(sha256(token))).revoked_at).toBeInstanceOf(Date);
    expect((await client.introspectAsReportsApi(token)).body).toEqual({ active: false });
  });

  test('another client may not revoke it: 400 invalid_request, recorded', async () => {
    const token = await client.accessToken('worker', REPORTS);
    const { status, body } = await client.revokeAs('orders-api', token);
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_request', error_description: 'client is not authorized to revoke the presented token' });
    expect((await tokenRow(sha256(token))).revoked_at).toBeNull();
    expect(await lastRejection()).toMatchObject({ client_id: 'orders-api', details: { route: 'revocation', error: 'invalid_request' } });
  });
});

describe('revocation cascades through token exchange lineage', () => {
  test('revoking the worker\'s token revokes what the orders API and the invoices API exchanged from it', async () => {
    const root = await client.accessToken('worker', ORDERS);
    const child = await client.exchange('orders-api', root, INVOICES);
    const grandchild = await client.exchange('invoices-api', child, ARCHIVE);
    const unrelated = await client.accessToken('worker', ORDERS);
    expect((await tokenRow(jtiOf(child))).parent_token_id).toBe(jtiOf(root));
    expect((await tokenRow(jtiOf(grandchild))).parent_token_id).toBe(jtiOf(child));

    expect((await client.revokeAs('worker', root)).status).toBe(200);

    for (const token of [root, child, grandchild]) expect((await tokenRow(jtiOf(token))).revoked_at).toBeInstanceOf(Date);
    expect((await tokenRow(jtiOf(unrelated))).revoked_at).toBeNull();
    const [childEvent] = (await eventsOf(jtiOf(child))).filter((event) => event.type === 'token.revoked');
    const [grandchildEvent] = (await eventsOf(jtiOf(grandchild))).filter((event) => event.type === 'token.revoked');
    expect(childEvent).toMatchObject({ client_id: 'orders-api', actor: 'worker', parent_token_id: jtiOf(root), details: { cascade_from: jtiOf(root) } });
    expect(grandchildEvent).toMatchObject({ client_id: 'invoices-api', parent_token_id: jtiOf(child), details: { cascade_from: jtiOf(root) } });

    // The derived tokens are dead to verifiers too.
    expect((await client.introspectAs('invoices-api', child)).body).toEqual({ active: false });
  });

  test('revoking a derived token leaves its parent alone', async () => {
    const root = await client.accessToken('worker', ORDERS);
    const child = await client.exchange('orders-api', root, INVOICES);
    expect((await client.revokeAs('orders-api', child)).status).toBe(200);
    expect((await tokenRow(jtiOf(child))).revoked_at).toBeInstanceOf(Date);
    expect((await tokenRow(jtiOf(root))).revoked_at).toBeNull();
  });
});

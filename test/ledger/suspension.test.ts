import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { resumeClient, suspendClient } from '../../src/ledger/client_states.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { type TokenResponse } from '../support/tether.js';
import { INVOICES, LedgerClient, ORDERS, REPORTS, startLedgerTether } from './ledger_config.js';

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

const facts = { requestId: 'suspension-test', sourceAddress: undefined, instanceId: 'test' };
const cause = { actor: 'cli:test', reason: 'key compromise drill' };
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

/** Asks for tokens until the answer is the suspension's 400; no answer on the way may be a token. */
async function untilRefusedAsSuspended(clientId: string): Promise<TokenResponse> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const response = await client.token(clientId, ORDERS);
    expect(response.body.access_token).toBeUndefined();
    // Until the instance's suspension view reloads, the issuance statement itself refuses: 503.
    if (response.status === 503) expect(response.body.error).toBe('temporarily_unavailable');
    else return response;
    if (Date.now() > deadline) throw new Error('suspension never reached the token path');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('suspending a client', () => {
  test('revokes its live tokens with their exchange lineage, and it gets no new tokens until resumed', async () => {
    const jwt = await client.accessToken('worker', ORDERS);
    const opaque = await client.accessToken('worker', REPORTS);
    const exchanged = await client.exchange('orders-api', jwt, INVOICES);
    const bystander = await client.accessToken('idle', ORDERS);

    const { changed, revoked } = await suspendClient(tether.database.knex, 'worker', cause, facts);
    expect(changed).toBe(true);
    expect(revoked.map((token) => token.tokenId).sort()).toEqual([decodeJwt(jwt).jti, sha256(opaque), decodeJwt(exchanged).jti].sort());
    expect(revoked.find((token) => token.tokenId === decodeJwt(exchanged).jti)?.cascadeFrom).toBe(decodeJwt(jwt).jti);

    const suspendedEvent = await tether.database.knex('ledger_events').where({ type: 'client.suspended', client_id: 'worker' }).first();
    expect(suspendedEvent).toMatchObject({ actor: 'cli:test', details: { reason: 'key compromise drill' } });
    const revokedEvent = await tether.database.knex('ledger_events').where({ type: 'token.revoked', token_id: decodeJwt(jwt).jti }).first();
    expect(revokedEvent.details).toEqual({ reason: 'client suspended: key compromise drill' });

    expect((await client.introspectAs('orders-api', jwt)).body).toEqual({ active: false });
    expect((await client.introspectAs('orders-api', bystander)).body.active).toBe(true);

    const refused = await untilRefusedAsSuspended('worker');
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({ error: 'unauthorized_client', error_description: 'the client may not obtain tokens at this time' });
    const rejection = await tether.database.knex('ledger_events').where({ request_id: refused.headers.get('x-request-id') }).first();
    expect(rejection).toMatchObject({ type: 'request.rejected', client_id: 'worker', details: { error: 'unauthorized_client', reason: 'client worker is suspended' } });

    // Other clients are not affected.
    expect((await client.token('idle', ORDERS)).status).toBe(200);

    expect(await resumeClient(tether.database.knex, 'worker', { actor: 'cli:test', reason: 'drill over' }, facts)).toEqual({ changed: true });
    // A resumption takes effect at once: the suspension view confirms suspended clients in the database.
    expect((await client.token('worker', ORDERS)).status).toBe(200);
    // Revoked tokens stay revoked.
    expect((await client.introspectAs('orders-api', jwt)).body).toEqual({ active: false });
    expect(await tether.database.knex('ledger_events').where({ type: 'client.resumed', client_id: 'worker' })).toHaveLength(1);
  });

  test('suspending twice records one suspension; resuming an active client changes nothing', async () => {
    expect((await suspendClient(tether.database.knex, 'idle', cause, facts)).changed).toBe(true);
    expect((await suspendClient(tether.database.knex, 'idle', cause, facts)).changed).toBe(false);
    expect(await tether.database.knex('ledger_events').where({ type: 'client.suspended', client_id: 'idle' })).toHaveLength(1);
    await resumeClient(tether.database.knex, 'idle', cause, facts);
    expect(await resumeClient(tether.database.knex, 'idle', cause, facts)).toEqual({ changed: false });
  });

  test('a suspension during a burst of token requests leaves the client no live token', async () => {
    const statuses = new Map<number, number>();
    let suspended = false;
    let issuedAfterSuspension = 0;
    const worker = async () => {
      for (let index = 0; index < 40; index += 1) {
        const wasSuspended = suspended;
        const response = await client.token('idle', ORDERS);
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        if (response.status === 200 && wasSuspended) issuedAfterSuspension += 1;
      }
    };
    const burst = Promise.all(Array.from({ length: 8 }, worker));
    // Mid-burst: once tokens flow (a loaded machine may need longer than any fixed delay).
    for (let waited = 0; !(statuses.get(200) ?? 0) && waited < 60_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    await suspendClient(tether.database.knex, 'idle', cause, facts);
    suspended = true;
    await burst;

    expect(statuses.get(200)).toBeGreaterThan(0);
    expect((statuses.get(400) ?? 0) + (statuses.get(503) ?? 0)).toBeGreaterThan(0);
    expect(issuedAfterSuspension).toBe(0);
    expect([...statuses.keys()].every((status) => [200, 400, 503].includes(status))).toBe(true);
    const live = await tether.database.knex('issued_tokens').where({ client_id: 'idle' }).whereNull('revoked_at');
    expect(live).toEqual([]);
    await resumeClient(tether.database.knex, 'idle', cause, facts);
  });
});

import { createHash, X509Certificate } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm } from '../support/tether.js';
import { INVOICES, LEGACY, LEGACY_SECRET, LedgerClient, ORDERS, REPORTS, startLedgerTether } from './ledger_config.js';

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

function thumbprintOf(clientId: string): string {
  return createHash('sha256').update(new X509Certificate(tether.pki.clients[clientId]!.certificatePem).raw).digest('base64url');
}

async function eventsOf(tokenId: string) {
  return tether.database.knex('ledger_events').where({ token_id: tokenId }).orderBy('id');
}

async function tokenRow(tokenId: string) {
  return tether.database.knex('issued_tokens').where({ token_id: tokenId }).first();
}

describe('every issued token has its event and its inventory row before the client sees it', () => {
  test('a certificate-bound JWT: event fields, request facts, and the issued_tokens row', async () => {
    const response = await client.token('worker', ORDERS, { scope: 'orders:read' });
    expect(response.status).toBe(200);
    const token = response.body.access_token as string;
    const claims = decodeJwt(token);

    const [event, ...others] = await eventsOf(claims.jti!);
    expect(others).toEqual([]);
    expect(event).toMatchObject({
      type: 'token.issued',
      client_id: 'worker',
      resource: ORDERS,
      scope: 'orders:read',
      token_id: claims.jti,
      token_format: 'jwt',
      binding_method: 'mtls',
      binding_thumbprint: thumbprintOf('worker'),
      parent_token_id: null,
      actor: null,
      request_id: response.headers.get('x-request-id'),
      source_address: '127.0.0.1',
      instance_id: tether.app.instanceId,
    });
    expect(seconds(event.expires_at)).toBe(claims.exp);

    const row = await tokenRow(claims.jti!);
    expect(row).toMatchObject({
      format: 'jwt', client_id: 'worker', resource: ORDERS, scope: 'orders:read', binding_method: 'mtls', binding_thumbprint: thumbprintOf('worker'),
      parent_token_id: null, act: null, revoked_at: null, last_used_at: null,
    });
    expect(seconds(row.issued_at)).toBe(claims.iat);
    expect(seconds(row.expires_at)).toBe(claims.exp);
  });

  test('an X-Request-Id sent by the caller is the event\'s request id', async () => {
    const { body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'worker', resource: ORDERS }, {
      dispatcher: client.agent('worker'), headers: { 'x-request-id': 'trace-4711' },
    });
    const [event] = await eventsOf(decodeJwt(body.access_token as string).jti!);
    expect(event.request_id).toBe('trace-4711');
  });

  test('an opaque token is recorded under the SHA-256 of its id; the token itself is stored nowhere in the ledger', async () => {
    const token = await client.accessToken('worker', REPORTS);
    const [event] = await eventsOf(sha256(token));
    expect(event).toMatchObject({ type: 'token.issued', token_format: 'opaque', resource: REPORTS });
    expect((await tokenRow(sha256(token))).format).toBe('opaque');
    for (const table of ['ledger_events', 'issued_tokens']) {
      const [{ count }] = (await tether.database.knex.raw(`SELECT count(*)::int AS count FROM ${table} t WHERE position(? in t::text) > 0`, [token])).rows;
      expect(count).toBe(0);
    }
  });

  test('a DPoP-bound token records binding dpop and the key thumbprint (cnf.jkt)', async () => {
    const { token, key } = await client.dpopAccessToken();
    const [event] = await eventsOf(decodeJwt(token).jti!);
    expect(event).toMatchObject({ client_id: 'dpop-worker', binding_method: 'dpop', binding_thumbprint: key.thumbprint });
  });

  test('an unbound token (a resource that allows bearer tokens) is visible as binding bearer', async () => {
    const { status, body } = await postForm(tether.tokenEndpoint, {
      grant_type: 'client_credentials', client_id: 'legacy', client_secret: LEGACY_SECRET, resource: LEGACY,
    }, { dispatcher: client.agent() });
    expect(status).toBe(200);
    const [event] = await eventsOf(decodeJwt(body.access_token as string).jti!);
    expect(event).toMatchObject({ client_id: 'legacy', binding_method: 'bearer', binding_thumbprint: null });
  });

  test('an exchanged token: token.exchanged with its parent and the acting client', async () => {
    const subject = await client.accessToken('worker', ORDERS);
    const exchanged = await client.exchange('orders-api', subject, INVOICES);
    const claims = decodeJwt(exchanged);
    const [event] = await eventsOf(claims.jti!);
    expect(event).toMatchObject({
      type: 'token.exchanged', client_id: 'orders-api', resource: INVOICES, parent_token_id: decodeJwt(subject).jti, binding_method: 'mtls',
    });
    const row = await tokenRow(claims.jti!);
    expect(row.parent_token_id).toBe(decodeJwt(subject).jti);
    expect(row.act).toEqual(claims.act);
    expect(event.actor).toBe((claims.act as { sub?: string } | undefined)?.sub ?? null);
  });
});

describe('the ledger costs at most one database round trip per issuance', () => {
  test('a lone mTLS JWT issuance runs exactly one statement (besides the once-a-second suspension view)', async () => {
    await client.accessToken('worker', ORDERS);
    const statements: string[] = [];
    const onQuery = (query: { sql: string }) => statements.push(query.sql);
    tether.database.knex.on('query', onQuery);
    try {
      await client.accessToken('worker', ORDERS);
    } finally {
      tether.database.knex.off('query', onQuery);
    }
    const perRequest = statements.filter((sql) => !sql.includes('FROM client_states WHERE suspended'));
    expect(perRequest).toHaveLength(1);
    expect(perRequest[0]).toMatch(/INSERT INTO ledger_events[\s\S]*INSERT INTO issued_tokens/);
  });

  test('concurrent issuances share statements, and every one of them is recorded', async () => {
    const statements: string[] = [];
    const onQuery = (query: { sql: string }) => statements.push(query.sql);
    tether.database.knex.on('query', onQuery);
    let tokens: string[];
    try {
      tokens = await Promise.all(Array.from({ length: 20 }, (_, index) => client.accessToken(index % 2 ? 'worker' : 'idle', ORDERS)));
    } finally {
      tether.database.knex.off('query', onQuery);
    }
    const issuanceStatements = statements.filter((sql) => sql.includes('INSERT INTO issued_tokens'));
    expect(issuanceStatements.length).toBeLessThanOrEqual(20);
    const recorded = await tether.database.knex('ledger_events').whereIn('token_id', tokens.map((token) => decodeJwt(token).jti!)).andWhere({ type: 'token.issued' });
    expect(recorded).toHaveLength(20);
  });
});

import { createHash, X509Certificate } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm } from '../support/tether.js';
import { INVOICES, LedgerClient, ORDERS, REPORTS, SHORT, STRANGER_SECRET, VAULT, startLedgerTether } from './ledger_config.js';

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

function thumbprintOf(clientId: string): string {
  return createHash('sha256').update(new X509Certificate(tether.pki.clients[clientId]!.certificatePem).raw).digest('base64url');
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

async function lastEvent(type: string) {
  return tether.database.knex('ledger_events').where({ type }).orderBy('id', 'desc').first();
}

describe('introspection of JWT access tokens (RFC 7662 §2.2)', () => {
  test('the audience\'s resource server gets active: true with the token\'s facts', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const claims = decodeJwt(token);
    const { status, body } = await client.introspectAs('orders-api', token);
    expect(status).toBe(200);
    expect(body).toEqual({
      active: true,
      client_id: 'worker',
      scope: 'orders:read orders:write',
      aud: ORDERS,
      iss: tether.issuer,
      exp: claims.exp,
      iat: claims.iat,
      sub: 'worker',
      token_type: 'Bearer',
      cnf: { 'x5t#S256': thumbprintOf('worker') },
      jti: claims.jti,
    });
  });

  test('an active answer records the use (last_used_at) and a token.introspected event', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const { jti } = decodeJwt(token);
    const before = await tether.database.knex('issued_tokens').where({ token_id: jti }).first();
    expect(before.last_used_at).toBeNull();

    await client.introspectAs('orders-api', token);
    const after = await tether.database.knex('issued_tokens').where({ token_id: jti }).first();
    expect(after.last_used_at).toBeInstanceOf(Date);
    const event = await lastEvent('token.introspected');
    expect(event).toMatchObject({
      token_id: jti, client_id: 'worker', actor: 'orders-api', resource: ORDERS, token_format: 'jwt', binding_method: 'mtls', details: { active: true },
    });
  });

  test('a DPoP-bound token is introspected with token_type DPoP and cnf.jkt (RFC 9449 §6.2)', async () => {
    const { token, key } = await client.dpopAccessToken();
    const { body } = await client.introspectAs('orders-api', token);
    expect(body).toMatchObject({ active: true, client_id: 'dpop-worker', token_type: 'DPoP', cnf: { jkt: key.thumbprint } });
  });

  test.each([
    ['the token\'s own client', (token: string) => client.introspectAs('worker', token), 'client worker may not introspect tokens for https://orders.ledger.test'],
    ['another API\'s resource server', (token: string) => client.introspectAs('invoices-api', token), 'client invoices-api may not introspect tokens for https://orders.ledger.test'],
    ['an authenticated client entitled to nothing', (token: string) => postForm(client.introspectionEndpoint, { token, client_id: 'stranger', client_secret: STRANGER_SECRET }, { dispatcher: client.agent() }), 'client stranger may not introspect tokens for https://orders.ledger.test'],
  ])('%s is told only active: false, and the reason is recorded', async (_label, introspect, reason) => {
    const token = await client.accessToken('worker', ORDERS);
    const { status, body } = await introspect(token);
    expect(status).toBe(200);
    expect(body).toEqual({ active: false });
    expect((await lastEvent('token.introspected')).details).toEqual({ active: false, reason });
    // Not a use of the token.
    expect((await tether.database.knex('issued_tokens').where({ token_id: decodeJwt(token).jti }).first()).last_used_at).toBeNull();
  });

  test('a revoked token is inactive', async () => {
    const token = await client.accessToken('worker', ORDERS);
    expect((await client.revokeAs('worker', token)).status).toBe(200);
    const { body } = await client.introspectAs('orders-api', token);
    expect(body).toEqual({ active: false });
    expect((await lastEvent('token.introspected')).details).toEqual({ active: false, reason: 'revoked' });
  });

  test('an expired token is inactive', async () => {
    const token = await client.accessToken('worker', SHORT);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const { body } = await client.introspectAs('orders-api', token);
    expect(body).toEqual({ active: false });
    expect((await lastEvent('token.introspected'))).toMatchObject({ token_id: decodeJwt(token).jti, details: { active: false, reason: 'expired' } });
  });

  test('a JWT with a valid shape but signed by another key is inactive (never looked up by its jti)', async () => {
    const real = decodeJwt(await client.accessToken('worker', ORDERS));
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ ...real })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: (await exportJWK(publicKey)).kid ?? 'forged' })
      .sign(privateKey);
    const { body } = await client.introspectAs('orders-api', forged);
    expect(body).toEqual({ active: false });
    const event = await lastEvent('token.introspected');
    expect(event.token_id).toBeNull();
    expect(event.details.active).toBe(false);
    expect(event.details.reason).toMatch(/^JWT not accepted/);
  });

  test('an unknown opaque string is inactive', async () => {
    const { body } = await client.introspectAs('orders-api', 'no-such-token');
    expect(body).toEqual({ active: false });
    expect(await lastEvent('token.introspected')).toMatchObject({ token_id: sha256('no-such-token'), details: { active: false, reason: 'no issuance record for this token' } });
  });
});

describe('introspection of opaque access tokens', () => {
  test('the reports API\'s resource server (client_secret_basic) gets active: true; the ledger keeps only the hashed id', async () => {
    const token = await client.accessToken('worker', REPORTS);
    const { status, body } = await client.introspectAsReportsApi(token);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      active: true, client_id: 'worker', scope: 'reports:read', aud: REPORTS, iss: tether.issuer, sub: 'worker', token_type: 'Bearer',
      cnf: { 'x5t#S256': thumbprintOf('worker') },
    });
    expect(body.jti).toBeUndefined();
    expect((body.exp as number) - (body.iat as number)).toBe(300);
    expect(await lastEvent('token.introspected')).toMatchObject({ token_id: sha256(token), token_format: 'opaque', actor: 'reports-api' });
    expect(await tether.database.knex('issued_tokens').where({ token_id: token }).first()).toBeUndefined();
  });

  test('an exchanged token carries the subject token\'s subject and act, for JWT and opaque alike (RFC 8693 §2.1, §4.1)', async () => {
    const subject = await client.accessToken('worker', ORDERS);
    const jwt = await client.exchange('orders-api', subject, INVOICES);
    const opaque = await client.exchange('orders-api', subject, VAULT);
    const claims = decodeJwt(jwt);
    const fromJwt = (await client.introspectAs('invoices-api', jwt)).body;
    const fromOpaque = (await client.introspectAsReportsApi(opaque)).body;
    expect(fromJwt).toMatchObject({ active: true, client_id: 'orders-api', sub: claims.sub, act: claims.act, aud: INVOICES });
    expect(fromOpaque).toMatchObject({ active: true, client_id: 'orders-api', sub: claims.sub, act: claims.act, aud: VAULT });
    expect((await tether.database.knex('issued_tokens').where({ token_id: sha256(opaque) }).first()).subject).toBe(claims.sub);
  });

  test('anyone else gets active: false', async () => {
    const token = await client.accessToken('worker', REPORTS);
    expect((await client.introspectAs('orders-api', token)).body).toEqual({ active: false });
    expect((await client.introspectAs('worker', token)).body).toEqual({ active: false });
  });
});

describe('introspection requests refused before any token is looked at', () => {
  test('no client authentication → 401 invalid_client, recorded as a rejection', async () => {
    const token = await client.accessToken('worker', ORDERS);
    const { status, body } = await postForm(client.introspectionEndpoint, { token, client_id: 'orders-api' }, { dispatcher: client.agent() });
    expect(status).toBe(401);
    expect(body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });
    expect(await lastEvent('request.rejected')).toMatchObject({
      client_id: 'orders-api', details: { route: 'introspection', status: 401, error: 'invalid_client', reason: 'client certificate was not provided' },
    });
  });

  test('no token parameter → 400 invalid_request, recorded', async () => {
    const { status, body } = await postForm(client.introspectionEndpoint, { client_id: 'orders-api' }, { dispatcher: client.agent('orders-api') });
    expect(status).toBe(400);
    expect(body).toEqual({ error: 'invalid_request', error_description: "missing required parameter 'token'" });
    expect(await lastEvent('request.rejected')).toMatchObject({ client_id: 'orders-api', details: { route: 'introspection', error: 'invalid_request' } });
  });
});

describe('introspection and revocation when the database cannot answer', () => {
  async function withTableAway<T>(table: string, run: () => Promise<T>): Promise<T> {
    await tether.database.knex.raw(`ALTER TABLE ${table} RENAME TO ${table}_away`);
    try {
      return await run();
    } finally {
      await tether.database.knex.raw(`ALTER TABLE ${table}_away RENAME TO ${table}`);
    }
  }

  test('the ledger unreadable: 503 temporarily_unavailable with Retry-After, never an answer about the token', async () => {
    const token = await client.accessToken('worker', ORDERS);
    for (const send of [() => client.introspectAs('orders-api', token), () => client.revokeAs('worker', token)]) {
      const { status, headers, body } = await withTableAway('issued_tokens', send);
      expect(status).toBe(503);
      expect(headers.get('retry-after')).toBe('1');
      expect(body).toEqual({ error: 'temporarily_unavailable', error_description: 'token status is not available right now; retry later' });
    }
    expect((await client.introspectAs('orders-api', token)).body.active).toBe(true);
  });

  test('oidc-provider\'s token store unreadable (opaque tokens): its server_error becomes 503, not 500', async () => {
    const token = await client.accessToken('worker', REPORTS);
    const { status, headers, body } = await withTableAway('oidc_payloads', () => client.introspectAsReportsApi(token));
    expect(status).toBe(503);
    expect(headers.get('retry-after')).toBe('1');
    expect(body.error).toBe('temporarily_unavailable');
    const rejection = await lastEvent('request.rejected');
    expect(rejection).toMatchObject({ client_id: 'reports-api', details: { route: 'introspection', status: 503, error: 'temporarily_unavailable' } });
    expect(rejection.details.reason).toMatch(/^database unavailable: /);
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import knexFactory, { type Knex } from 'knex';
import Provider, { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

import { createAdapterFactory, startExpirySweeper, sweepExpired } from '../../src/storage/adapter.js';
import { hashIdentifier } from '../../src/storage/hash_id.js';
import { loadSigningKeys } from '../../src/keys/signing_keys.js';
import { openTestDatabase } from '../support/database.js';

type TestDatabase = Awaited<ReturnType<typeof openTestDatabase>>;

let database: TestDatabase;
let knex: Knex;
let adapterFor: (model: string) => Adapter;

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
  adapterFor = createAdapterFactory(knex);
});

afterAll(async () => {
  await database.close();
});

const epochNow = (): number => Math.floor(Date.now() / 1000);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function rawRows(model: string): Promise<Array<Record<string, unknown>>> {
  return (await knex('oidc_payloads').where({ model }).select('*')) as Array<Record<string, unknown>>;
}

function tokenPayload(id: string, extra: Partial<AdapterPayload> = {}): AdapterPayload {
  return { jti: id, iat: epochNow(), exp: epochNow() + 60, kind: 'AccessToken', clientId: 'c1', ...extra };
}

describe('oidc-provider adapter contract', () => {
  it('upserts, finds and overwrites a payload; stores only hashes of the id', async () => {
    const adapter = adapterFor('AccessToken');
    const id = 'opaque-token-id-1';
    await adapter.upsert(id, tokenPayload(id, { scope: 'read' }), 60);
    expect(await adapter.find(id)).toMatchObject({ jti: id, scope: 'read' });

    await adapter.upsert(id, tokenPayload(id, { scope: 'write' }), 60);
    expect(await adapter.find(id)).toMatchObject({ scope: 'write' });

    const rows = await rawRows('AccessToken');
    const row = rows.find((candidate) => candidate.id_hash === hashIdentifier(id));
    expect(row).toBeDefined();
    // The raw id is a bearer secret: it must not appear in any column, the payload included.
    expect(JSON.stringify(row)).not.toContain(id);
    expect(row?.payload).toEqual({ iat: expect.any(Number), exp: expect.any(Number), kind: 'AccessToken', clientId: 'c1', scope: 'write' });
    expect(row?.id_hash).toBe(hashIdentifier(id));
    expect(await adapter.find('someone-else')).toBeUndefined();
  });

  it('keeps models apart', async () => {
    await adapterFor('AccessToken').upsert('shared-id', tokenPayload('shared-id'), 60);
    expect(await adapterFor('RefreshToken').find('shared-id')).toBeUndefined();
  });

  it('finds by uid and user code through hashes', async () => {
    // The id is a credential only its holder has: found by uid or user code, a row comes back
    // without it (issue 12 item 8: nothing stored is presentable); a user code is put back.
    const sessions = adapterFor('Session');
    await sessions.upsert('session-1', { jti: 'session-1', uid: 'uid-1', kind: 'Session', accountId: 'a1' }, 60);
    expect(await sessions.findByUid('uid-1')).toEqual({ uid: 'uid-1', kind: 'Session', accountId: 'a1' });
    expect(await sessions.find('session-1')).toEqual({ jti: 'session-1', uid: 'uid-1', kind: 'Session', accountId: 'a1' });
    expect(await sessions.findByUid('uid-2')).toBeUndefined();

    const deviceCodes = adapterFor('DeviceCode');
    await deviceCodes.upsert('device-1', { jti: 'device-1', userCode: 'ABCD-EFGH', kind: 'DeviceCode' }, 60);
    expect(await deviceCodes.findByUserCode('ABCD-EFGH')).toEqual({ userCode: 'ABCD-EFGH', kind: 'DeviceCode' });

    const [sessionRow] = await rawRows('Session');
    expect(sessionRow?.uid_hash).toBe(hashIdentifier('uid-1'));
    const [deviceRow] = await rawRows('DeviceCode');
    expect(deviceRow?.user_code_hash).toBe(hashIdentifier('ABCD-EFGH'));
  });

  it('consumes once; a second consume fails like oidc-provider reuse detection', async () => {
    const codes = adapterFor('AuthorizationCode');
    await codes.upsert('code-1', tokenPayload('code-1', { kind: 'AuthorizationCode' }), 60);
    await codes.consume('code-1');
    const found = await codes.find('code-1');
    expect(typeof found?.consumed).toBe('number');
    expect(Math.abs((found?.consumed as number) - epochNow())).toBeLessThanOrEqual(2);
    const [row] = await rawRows('AuthorizationCode');
    expect(row?.consumed_at).toBeInstanceOf(Date);

    await expect(codes.consume('code-1')).rejects.toBeInstanceOf(errors.InvalidGrant);
  });

  it('lets exactly one of two concurrent consumes win', async () => {
    const tokens = adapterFor('RefreshToken');
    await tokens.upsert('refresh-1', tokenPayload('refresh-1', { kind: 'RefreshToken' }), 60);
    const results = await Promise.allSettled([tokens.consume('refresh-1'), tokens.consume('refresh-1')]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
  });

  it('destroys', async () => {
    const adapter = adapterFor('Interaction');
    await adapter.upsert('interaction-1', { jti: 'interaction-1', kind: 'Interaction' }, 60);
    await adapter.destroy('interaction-1');
    expect(await adapter.find('interaction-1')).toBeUndefined();
    expect(await rawRows('Interaction')).toHaveLength(0);
  });

  it('revokes by grant id within the model only', async () => {
    const accessTokens = adapterFor('AccessToken');
    const refreshTokens = adapterFor('RefreshToken');
    await accessTokens.upsert('at-g1', tokenPayload('at-g1', { grantId: 'grant-1' }), 60);
    await accessTokens.upsert('at-g2', tokenPayload('at-g2', { grantId: 'grant-2' }), 60);
    await refreshTokens.upsert('rt-g1', tokenPayload('rt-g1', { grantId: 'grant-1', kind: 'RefreshToken' }), 60);

    await accessTokens.revokeByGrantId('grant-1');
    expect(await accessTokens.find('at-g1')).toBeUndefined();
    expect(await accessTokens.find('at-g2')).toBeDefined();
    expect(await refreshTokens.find('rt-g1')).toBeDefined();
    const grantColumn = (await rawRows('RefreshToken')).find((row) => row.id_hash === hashIdentifier('rt-g1'))?.grant_id;
    expect(grantColumn).toBe(hashIdentifier('grant-1'));
  });

  it('makes expired rows invisible to find, findByUid and findByUserCode', async () => {
    const sessions = adapterFor('Session');
    await sessions.upsert('short-session', { jti: 'short-session', uid: 'short-uid', userCode: 'SHORT', kind: 'Session' }, 1);
    await sessions.upsert('past-session', { jti: 'past-session', uid: 'past-uid', kind: 'Session' }, -5);
    expect(await sessions.find('short-session')).toBeDefined();
    expect(await sessions.find('past-session')).toBeUndefined();
    expect(await sessions.findByUid('past-uid')).toBeUndefined();

    await sleep(1100);
    expect(await sessions.find('short-session')).toBeUndefined();
    expect(await sessions.findByUid('short-uid')).toBeUndefined();
    expect(await sessions.findByUserCode('SHORT')).toBeUndefined();
    await expect(sessions.consume('short-session')).rejects.toBeInstanceOf(errors.InvalidGrant);
  });

  it('keeps payloads without expiry', async () => {
    const clients = adapterFor('Client');
    await clients.upsert('client-x', { client_id: 'client-x' } as AdapterPayload, undefined);
    const [row] = await rawRows('Client');
    expect(row?.expires_at).toBeNull();
    expect(await clients.find('client-x')).toMatchObject({ client_id: 'client-x' });
  });
});

describe('ReplayDetection', () => {
  it('accepts a jti once and throws invalid_client on a second insert', async () => {
    const replay = adapterFor('ReplayDetection');
    const payload = { jti: 'jti-hash-1', iss: 'client-1', kind: 'ReplayDetection' } as AdapterPayload;
    await replay.upsert('jti-hash-1', payload, 60);
    const second = replay.upsert('jti-hash-1', payload, 60);
    await expect(second).rejects.toBeInstanceOf(errors.InvalidClient);
    await expect(second).rejects.toMatchObject({ error: 'invalid_client', error_detail: 'client assertion replay detected' });
  });

  it('lets exactly one of two concurrent inserts through, also across two connection pools', async () => {
    const payload = { jti: 'jti-race', iss: 'client-1', kind: 'ReplayDetection' } as AdapterPayload;
    const second = database.url === undefined ? undefined : knexFactory({ client: 'pg', connection: database.url });
    try {
      const instances = [adapterFor('ReplayDetection'), createAdapterFactory(second ?? knex)('ReplayDetection')];
      const results = await Promise.allSettled(instances.map((adapter) => adapter.upsert('jti-race', payload, 60)));
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.find((result) => result.status === 'rejected') as PromiseRejectedResult;
      expect(rejected.reason).toBeInstanceOf(errors.InvalidClient);
    } finally {
      await second?.destroy();
    }
  });

  it('reuses the slot of an expired record', async () => {
    const replay = adapterFor('ReplayDetection');
    const payload = { jti: 'jti-old', iss: 'client-1', kind: 'ReplayDetection' } as AdapterPayload;
    await replay.upsert('jti-old', payload, -1);
    await expect(replay.upsert('jti-old', payload, 60)).resolves.toBeUndefined();
  });
});

describe('expiry sweeper', () => {
  it('deletes rows expired for longer than the grace period, in bounded batches, and expired DPoP proofs and federated assertion records', async () => {
    const adapter = adapterFor('SweepModel');
    for (let index = 0; index < 5; index += 1) {
      await adapter.upsert(`old-${index}`, { jti: `old-${index}` } as AdapterPayload, -3600);
    }
    await adapter.upsert('recently-expired', { jti: 'recently-expired' } as AdapterPayload, -1);
    await adapter.upsert('live', { jti: 'live' } as AdapterPayload, 3600);
    await knex('dpop_proofs').insert([
      { key_hash: 'expired-proof', expires_at: new Date(Date.now() - 1000) },
      { key_hash: 'live-proof', expires_at: new Date(Date.now() + 60_000) },
    ]);
    await knex('federated_assertions').insert([
      { key_hash: 'expired-assertion', expires_at: new Date(Date.now() - 1000) },
      { key_hash: 'live-assertion', expires_at: new Date(Date.now() + 60_000) },
    ]);

    const first = await sweepExpired(knex, { graceMs: 60_000, batchSize: 3 });
    expect(first.oidcPayloads).toBe(3);
    expect(first.dpopProofs).toBe(1);
    expect(first.federatedAssertions).toBe(1);
    const second = await sweepExpired(knex, { graceMs: 60_000, batchSize: 3 });
    expect(second.oidcPayloads).toBe(2);

    const left = (await rawRows('SweepModel')).map((row) => row.id_hash).sort();
    expect(left).toEqual([hashIdentifier('live'), hashIdentifier('recently-expired')].sort());
    expect(await knex('dpop_proofs').pluck('key_hash')).toEqual(['live-proof']);
    expect(await knex('federated_assertions').pluck('key_hash')).toEqual(['live-assertion']);
  });

  it('runs periodically and stops cleanly', async () => {
    const adapter = adapterFor('SweepModel2');
    await adapter.upsert('gone', { jti: 'gone' } as AdapterPayload, -3600);
    const sweeper = startExpirySweeper(knex, { intervalMs: 50, graceMs: 0 });
    await sleep(300);
    await sweeper.stop();
    expect(await rawRows('SweepModel2')).toHaveLength(0);
  });
});

describe('through a real oidc-provider', () => {
  let server: Server;
  let issuer: string;
  const JWT_CLIENT_SECRET = 'a-client-secret-of-at-least-32-bytes-for-hs256';

  beforeAll(async () => {
    const { jwks } = await loadSigningKeys(knex, { algorithm: 'ES256' });
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const provider = new Provider(issuer, {
      adapter: createAdapterFactory(knex),
      jwks: jwks as never,
      clientDefaults: { id_token_signed_response_alg: 'ES256' },
      clients: [
        { client_id: 'secret-client', client_secret: 'a-long-enough-client-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
        {
          // client_secret_jwt rather than private_key_jwt: under jest, oidc-provider's structuredClone
          // of a static client `jwks` yields objects from another realm, which it then rejects.
          client_id: 'jwt-client',
          client_secret: JWT_CLIENT_SECRET,
          token_endpoint_auth_method: 'client_secret_jwt',
          token_endpoint_auth_signing_alg: 'HS256',
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
      ],
      ttl: { ClientCredentials: 300 },
      features: {
        clientCredentials: { enabled: true },
        introspection: { enabled: true, allowedPolicy: async () => true },
        revocation: { enabled: true, allowedPolicy: async () => true },
        devInteractions: { enabled: false },
      },
    });
    server.on('request', provider.callback());
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  async function postForm(path: string, form: Record<string, string>, basic?: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${issuer}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(basic === undefined ? {} : { authorization: `Basic ${Buffer.from(basic).toString('base64')}` }),
      },
      body: new URLSearchParams(form),
    });
    const text = await response.text();
    return { status: response.status, body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
  }

  it('stores an opaque client_credentials token hashed, finds it for introspection, forgets it on revocation', async () => {
    const basic = 'secret-client:a-long-enough-client-secret';
    const issued = await postForm('/token', { grant_type: 'client_credentials' }, basic);
    expect(issued).toEqual({ status: 200, body: expect.objectContaining({ token_type: 'Bearer' }) });
    const token = issued.body.access_token as string;

    const rows = await rawRows('ClientCredentials');
    const row = rows.find((candidate) => candidate.id_hash === hashIdentifier(token));
    expect(row).toBeDefined();
    expect(JSON.stringify(rows)).not.toContain(token);

    expect((await postForm('/token/introspection', { token }, basic)).body).toMatchObject({ active: true, client_id: 'secret-client' });
    expect((await postForm('/token/revocation', { token }, basic)).status).toBe(200);
    expect((await postForm('/token/introspection', { token }, basic)).body).toEqual({ active: false });
  });

  it('rejects a replayed client assertion (ReplayDetection through the adapter)', async () => {
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('jwt-client')
      .setSubject('jwt-client')
      .setAudience(issuer)
      .setJti(`assertion-${Date.now()}`)
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(JWT_CLIENT_SECRET));
    const form = {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    };
    expect(await postForm('/token', form)).toEqual({ status: 200, body: expect.objectContaining({ token_type: 'Bearer' }) });
    const replayed = await postForm('/token', form);
    expect(replayed.status).toBe(401);
    expect(replayed.body.error).toBe('invalid_client');
    expect(await rawRows('ReplayDetection')).not.toHaveLength(0);
  });
});

import { createLocalJWKSet, importJWK, jwtVerify, SignJWT, type JWK } from 'jose';
import knexFactory, { type Knex } from 'knex';

import {
  KeyEncryptionError,
  listSigningKeys,
  loadServerSecret,
  loadSigningKeys,
  retireSigningKey,
  rotateSigningKey,
  type SigningAlgorithm,
} from '../../src/keys/signing_keys.js';
import { openTestDatabase } from '../support/database.js';

type TestDatabase = Awaited<ReturnType<typeof openTestDatabase>>;

let database: TestDatabase;
let knex: Knex;

const SECRET = 'key-encryption-secret-0123456789abcdef';

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
});

afterAll(async () => {
  await database.close();
});

beforeEach(async () => {
  await knex('signing_keys').delete();
});

/** Another "instance": a second pool on PostgreSQL; PGlite has one connection, so the same knex. */
async function withSecondInstance<T>(work: (other: Knex) => Promise<T>): Promise<T> {
  const other = database.url === undefined ? knex : knexFactory({ client: 'pg', connection: database.url });
  try {
    return await work(other);
  } finally {
    if (other !== knex) await other.destroy();
  }
}

async function storedRows(): Promise<Array<{ kid: string; private_jwk: Record<string, unknown> }>> {
  return (await knex('signing_keys').select('kid', 'private_jwk')) as Array<{ kid: string; private_jwk: Record<string, unknown> }>;
}

const kidsOf = (jwks: { keys: JWK[] }): string[] => jwks.keys.map((key) => key.kid as string);

describe('loadSigningKeys', () => {
  it.each<[SigningAlgorithm, string]>([
    ['ES256', 'EC'],
    ['PS256', 'RSA'],
    ['EdDSA', 'OKP'],
  ])('generates one %s key on first load and reuses it; private keys sign what the public set verifies', async (algorithm, kty) => {
    const first = await loadSigningKeys(knex, { algorithm });
    const second = await loadSigningKeys(knex, { algorithm });
    expect(kidsOf(first.jwks)).toHaveLength(1);
    expect(kidsOf(second.jwks)).toEqual(kidsOf(first.jwks));

    const [privateJwk] = first.jwks.keys as [JWK];
    expect(privateJwk).toMatchObject({ kty, alg: algorithm, use: 'sig' });
    expect(privateJwk.d).toEqual(expect.any(String));
    expect(first.publicJwks.keys[0]).toMatchObject({ kty, alg: algorithm, use: 'sig', kid: privateJwk.kid });
    expect(first.publicJwks.keys[0]?.d).toBeUndefined();

    const token = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: algorithm, kid: privateJwk.kid as string })
      .sign(await importJWK(privateJwk, algorithm));
    const verified = await jwtVerify(token, createLocalJWKSet(first.publicJwks as { keys: JWK[] }));
    expect(verified.payload.sub).toBe('x');
  });

  it('creates exactly one key when two instances start at once', async () => {
    const results = await withSecondInstance((other) =>
      Promise.all([
        loadSigningKeys(knex, { algorithm: 'ES256' }),
        loadSigningKeys(other, { algorithm: 'ES256' }),
        loadSigningKeys(knex, { algorithm: 'ES256' }),
        loadSigningKeys(other, { algorithm: 'ES256' }),
      ]),
    );
    expect(await storedRows()).toHaveLength(1);
    const kids = new Set(results.map((result) => kidsOf(result.jwks).join()));
    expect(kids.size).toBe(1);
  });
});

describe('encryption at rest', () => {
  it('stores no plaintext private key when a secret is configured', async () => {
    const { jwks } = await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    const d = jwks.keys[0]?.d as string;
    const [row] = await storedRows();
    expect(row?.private_jwk.d).toBeUndefined();
    expect(row?.private_jwk.enc).toBe('tether-aes-256-gcm-v1');
    expect(JSON.stringify(row)).not.toContain(d);

    const again = await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    expect(again.jwks.keys[0]?.d).toBe(d);
  });

  it('says clearly when the secret is missing, wrong or too short, or the data is damaged', async () => {
    await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    await expect(loadSigningKeys(knex, { algorithm: 'ES256' })).rejects.toThrow(
      /encrypted at rest, but no key-encryption secret is configured/,
    );
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: `${SECRET}-other` })).rejects.toThrow(
      /not the one signing key .+ was encrypted with/,
    );
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: 'short' })).rejects.toBeInstanceOf(
      KeyEncryptionError,
    );

    const [row] = await storedRows();
    const ciphertext = String(row?.private_jwk.ciphertext);
    // Always a different first character (replacing it with a fixed one is a no-op 1 time in 64).
    const damaged = { ...row?.private_jwk, ciphertext: `${ciphertext.startsWith('A') ? 'B' : 'A'}${ciphertext.slice(1)}` };
    await knex('signing_keys').where({ kid: row?.kid }).update({ private_jwk: JSON.stringify(damaged) });
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET })).rejects.toThrow(/damaged/);
  });

  it('encrypts keys stored in plaintext once a secret is configured', async () => {
    const plain = await loadSigningKeys(knex, { algorithm: 'ES256' });
    expect((await storedRows())[0]?.private_jwk.d).toEqual(expect.any(String));
    const encrypted = await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    expect(kidsOf(encrypted.jwks)).toEqual(kidsOf(plain.jwks));
    expect((await storedRows())[0]?.private_jwk).toMatchObject({ enc: 'tether-aes-256-gcm-v1' });
    expect((await storedRows())[0]?.private_jwk.d).toBeUndefined();
  });
});

describe('rotation and retirement', () => {
  it('puts the newest key first and keeps older keys published until retired', async () => {
    const options = { algorithm: 'ES256' as const, encryptionSecret: SECRET };
    const initial = kidsOf((await loadSigningKeys(knex, options)).jwks);
    const { kid: second } = await rotateSigningKey(knex, options);
    const { kid: third } = await rotateSigningKey(knex, options);

    const loaded = await loadSigningKeys(knex, options);
    expect(kidsOf(loaded.jwks)).toEqual([third, second, ...initial]);
    expect(kidsOf(loaded.publicJwks)).toEqual([third, second, ...initial]);

    expect(await retireSigningKey(knex, initial[0] as string)).toEqual({ kid: initial[0], retired: true });
    expect(await retireSigningKey(knex, initial[0] as string)).toEqual({ kid: initial[0], retired: false });
    expect(kidsOf((await loadSigningKeys(knex, options)).publicJwks)).toEqual([third, second]);

    const listed = await listSigningKeys(knex);
    expect(listed.map((key) => [key.kid, key.current, key.retiredAt !== null])).toEqual([
      [third, true, false],
      [second, false, false],
      [initial[0], false, true],
    ]);
  });

  it('publishes a key staged for later activation without signing with it yet', async () => {
    const options = { algorithm: 'ES256' as const };
    const [current] = kidsOf((await loadSigningKeys(knex, options)).jwks);
    const { kid: staged } = await rotateSigningKey(knex, { ...options, activateAt: new Date(Date.now() + 3_600_000) });
    const loaded = await loadSigningKeys(knex, options);
    expect(kidsOf(loaded.jwks)).toEqual([current, staged]);
    expect(kidsOf(loaded.publicJwks)).toContain(staged);
  });

  it('makes a key of a newly configured algorithm current while older ones stay published', async () => {
    const [es256] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    const loaded = await loadSigningKeys(knex, { algorithm: 'EdDSA' });
    expect(loaded.jwks.keys[0]).toMatchObject({ alg: 'EdDSA' });
    expect(kidsOf(loaded.jwks)).toEqual([loaded.jwks.keys[0]?.kid, es256]);
  });
});

describe('loadServerSecret', () => {
  it('creates 32 random bytes once per name, shared by all instances', async () => {
    const [first, second] = await withSecondInstance((other) =>
      Promise.all([loadServerSecret(knex, 'dpop-nonce'), loadServerSecret(other, 'dpop-nonce')]),
    );
    expect(first).toHaveLength(32);
    expect(second?.equals(first as Buffer)).toBe(true);
    expect((await loadServerSecret(knex, 'dpop-nonce')).equals(first as Buffer)).toBe(true);
    expect((await loadServerSecret(knex, 'another')).equals(first as Buffer)).toBe(false);
  });
});

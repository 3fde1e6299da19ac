import { createLocalJWKSet, importJWK, jwtVerify, SignJWT, type JWK } from 'jose';
import knexFactory, { type Knex } from 'knex';

import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import { MINIMUM_SECRET_LENGTH } from '../../src/config/encryption_secret.js';
import { KeyEncryptionError } from '../../src/keys/key_encryption.js';
import { loadServerSecret } from '../../src/keys/server_secrets.js';
import {
  listSigningKeys,
  loadSigningKeys,
  retireSigningKey,
  rotateIfDue,
  rotateSigningKey,
  type SigningAlgorithm,
} from '../../src/keys/signing_keys.js';
import { openTestDatabase } from '../support/database.js';

type TestDatabase = Awaited<ReturnType<typeof openTestDatabase>>;

let database: TestDatabase;
let knex: Knex;

const SECRET = 'key-encryption-secret-0123456789abcdef';
const OTHER_SECRET = 'another-encryption-secret-0123456789abcdef';
const TIMING = { publicationDelaySeconds: 600, retirementTailSeconds: 360 };

beforeAll(async () => {
  database = await openTestDatabase();
  knex = database.knex;
});

afterAll(async () => {
  await database.close();
});

beforeEach(async () => {
  await knex('signing_keys').delete();
  await knex('server_secrets').delete();
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

/** Moves every time of a key by `seconds` (negative: into the past), as if that much time had passed for it. */
async function shiftKeyTimes(kid: string, seconds: number): Promise<void> {
  await knex.raw(
    `update signing_keys set created_at = created_at + ?::float8 * interval '1 second', activated_at = activated_at + ?::float8 * interval '1 second',
       retired_at = retired_at + ?::float8 * interval '1 second', published_until = published_until + ?::float8 * interval '1 second' where kid = ?`,
    [seconds, seconds, seconds, seconds, kid],
  );
}

const kidsOf = (jwks: { keys: JWK[] }): string[] => jwks.keys.map((key) => key.kid as string);
const statesOf = async () => Object.fromEntries((await listSigningKeys(knex)).map((key) => [key.kid, key.state]));

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

  it('makes a key of a newly configured algorithm the signing one while the older one stays published', async () => {
    const [es256] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    const loaded = await loadSigningKeys(knex, { algorithm: 'EdDSA' });
    expect(loaded.jwks.keys[0]).toMatchObject({ alg: 'EdDSA' });
    expect(kidsOf(loaded.jwks)).toEqual([loaded.jwks.keys[0]?.kid, es256]);
    expect(kidsOf(loaded.publicJwks)).toEqual([loaded.jwks.keys[0]?.kid, es256]);
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
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: OTHER_SECRET })).rejects.toThrow(
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
    expect(await storedRows()).toHaveLength(1);
  });

  it('encrypts keys stored in plaintext once a secret is configured', async () => {
    const plain = await loadSigningKeys(knex, { algorithm: 'ES256' });
    expect((await storedRows())[0]?.private_jwk.d).toEqual(expect.any(String));
    const encrypted = await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    expect(kidsOf(encrypted.jwks)).toEqual(kidsOf(plain.jwks));
    expect((await storedRows())[0]?.private_jwk).toMatchObject({ enc: 'tether-aes-256-gcm-v1' });
    expect((await storedRows())[0]?.private_jwk.d).toBeUndefined();
  });

  it('one minimum secret length everywhere: 32 characters', async () => {
    expect(MINIMUM_SECRET_LENGTH).toBe(32);
    const short = 'x'.repeat(MINIMUM_SECRET_LENGTH - 1);
    const enough = 'x'.repeat(MINIMUM_SECRET_LENGTH);
    const raw = (secret: string) => ({
      issuer: 'https://auth.example', signing: { encryptionSecret: secret },
      resources: [{ uri: 'https://api.example' }],
      clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef' } }],
    });
    expect(() => parseConfig(raw(short))).toThrow(ConfigError);
    expect(() => parseConfig(raw(short))).toThrow(/signing\.encryptionSecret: use at least 32 characters/);
    expect(() => parseConfig(raw(short))).not.toThrow(new RegExp(short));
    expect(parseConfig(raw(enough)).signing.encryptionSecret).toBe(enough);
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: short })).rejects.toThrow(/too short \(31 characters; use at least 32/);
    await expect(loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: enough })).resolves.toBeDefined();
  });
});

describe('every key write gets the protection the stored keys have', () => {
  it('refuses a plaintext key next to encrypted ones: rotation, first key of another algorithm, server secret', async () => {
    await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    const before = await storedRows();

    await expect(rotateSigningKey(knex, { algorithm: 'ES256', ...TIMING })).rejects.toThrow(
      /^refusing to store a key in plaintext: the stored keys are encrypted at rest \(signing key .+\); set TETHER_KEY_ENCRYPTION_SECRET/,
    );
    await expect(loadSigningKeys(knex, { algorithm: 'EdDSA' })).rejects.toThrow(/refusing to store a key in plaintext/);
    await expect(loadServerSecret(knex, 'dpop_nonce')).rejects.toThrow(/refusing to store a key in plaintext/);

    expect(await storedRows()).toEqual(before);
    expect(Number((await knex('server_secrets').count({ count: '*' }))[0]?.count)).toBe(0);
  });

  it('refuses to seal a key under a secret other than the stored keys\' one', async () => {
    await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    const before = await storedRows();
    await expect(rotateSigningKey(knex, { algorithm: 'ES256', encryptionSecret: OTHER_SECRET, ...TIMING })).rejects.toThrow(
      /refusing to store a key: the configured key-encryption secret is not the one signing key .+ was encrypted with/,
    );
    await expect(loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: OTHER_SECRET })).rejects.toThrow(/not the one signing key/);
    expect(await storedRows()).toEqual(before);
  });

  it('an encrypted server secret also forbids plaintext signing keys', async () => {
    await loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: SECRET });
    await expect(loadSigningKeys(knex, { algorithm: 'ES256' })).rejects.toThrow(/encrypted at rest \(server secret dpop_nonce\)/);
    expect(await storedRows()).toHaveLength(0);
  });

  it('with a secret, rotation seals the new key under it', async () => {
    await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET });
    const { kid } = await rotateSigningKey(knex, { algorithm: 'ES256', encryptionSecret: SECRET, ...TIMING });
    const row = (await storedRows()).find((candidate) => candidate.kid === kid);
    expect(row?.private_jwk).toMatchObject({ enc: 'tether-aes-256-gcm-v1' });
    expect(row?.private_jwk.d).toBeUndefined();
  });
});

describe('the DPoP nonce secret (server_secrets)', () => {
  it('is created once per name and shared by all instances', async () => {
    const [first, second] = await withSecondInstance((other) =>
      Promise.all([loadServerSecret(knex, 'dpop-nonce'), loadServerSecret(other, 'dpop-nonce')]),
    );
    expect(first).toHaveLength(32);
    expect(second?.equals(first as Buffer)).toBe(true);
    expect((await loadServerSecret(knex, 'dpop-nonce')).equals(first as Buffer)).toBe(true);
    expect((await loadServerSecret(knex, 'another')).equals(first as Buffer)).toBe(false);
  });

  it('is encrypted at rest with a secret: the table holds no form of it', async () => {
    const [first, second] = await withSecondInstance((other) => Promise.all([
      loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: SECRET }),
      loadServerSecret(other, 'dpop_nonce', { encryptionSecret: SECRET }),
    ]));
    expect(second?.equals(first as Buffer)).toBe(true);
    const dump = JSON.stringify(await knex('server_secrets').select('*'));
    for (const encoding of ['base64url', 'base64', 'hex'] as const) expect(dump).not.toContain((first as Buffer).toString(encoding));
    const [row] = (await knex('server_secrets').select('secret')) as { secret: string }[];
    expect(JSON.parse(row!.secret)).toMatchObject({ enc: 'tether-aes-256-gcm-v1' });

    await expect(loadServerSecret(knex, 'dpop_nonce')).rejects.toThrow(/server secret dpop_nonce is encrypted at rest, but no key-encryption secret is configured/);
    await expect(loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: OTHER_SECRET })).rejects.toThrow(
      /the configured key-encryption secret is not the one server secret dpop_nonce was encrypted with/,
    );
  });

  it('a plaintext one is sealed once a secret is configured, keeping its value', async () => {
    const plain = await loadServerSecret(knex, 'dpop_nonce');
    const sealed = await loadServerSecret(knex, 'dpop_nonce', { encryptionSecret: SECRET });
    expect(sealed.equals(plain)).toBe(true);
    expect(JSON.stringify(await knex('server_secrets').select('*'))).not.toContain(plain.toString('base64url'));
  });
});

describe('rotation: published first, signing after the publication delay', () => {
  it('a rotated key is published at once, signs only from its activation, and the key it replaces retires then', async () => {
    const options = { algorithm: 'ES256' as const, encryptionSecret: SECRET };
    const [initial] = kidsOf((await loadSigningKeys(knex, options)).jwks);
    const rotated = await rotateSigningKey(knex, { ...options, ...TIMING });
    expect(rotated.replaced).toEqual([initial]);

    let loaded = await loadSigningKeys(knex, options);
    expect(kidsOf(loaded.jwks)).toEqual([initial]);
    expect(kidsOf(loaded.publicJwks)).toEqual([initial, rotated.kid]);
    expect(await statesOf()).toEqual({ [initial!]: 'active', [rotated.kid]: 'staged' });

    // The times the rotation wrote: activation after the delay, the old key retired then and
    // published for the tail after it.
    const rows = (await knex('signing_keys').select('kid', 'created_at', 'activated_at', 'retired_at', 'published_until')) as {
      kid: string; created_at: Date; activated_at: Date; retired_at: Date | null; published_until: Date | null;
    }[];
    const fresh = rows.find((row) => row.kid === rotated.kid)!;
    const old = rows.find((row) => row.kid === initial)!;
    expect(fresh.activated_at.getTime() - fresh.created_at.getTime()).toBe(600_000);
    expect(old.retired_at?.getTime()).toBe(fresh.activated_at.getTime());
    expect(old.published_until!.getTime() - old.retired_at!.getTime()).toBe(360_000);

    // 600 s later: the new key signs, the old one is retiring (published, not signing).
    await shiftKeyTimes(initial!, -600);
    await shiftKeyTimes(rotated.kid, -600);
    loaded = await loadSigningKeys(knex, options);
    expect(kidsOf(loaded.jwks)).toEqual([rotated.kid]);
    expect(kidsOf(loaded.publicJwks)).toEqual([rotated.kid, initial]);
    expect(await statesOf()).toEqual({ [initial!]: 'retiring', [rotated.kid]: 'active' });

    // After the tail: the old key has left the JWKS.
    await shiftKeyTimes(initial!, -360);
    loaded = await loadSigningKeys(knex, options);
    expect(kidsOf(loaded.publicJwks)).toEqual([rotated.kid]);
    expect(await statesOf()).toEqual({ [initial!]: 'retired', [rotated.kid]: 'active' });
  });

  it('a second rotation before the first activates: each key signs until its successor activates', async () => {
    const [initial] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    const second = await rotateSigningKey(knex, { algorithm: 'ES256', ...TIMING });
    const third = await rotateSigningKey(knex, { algorithm: 'ES256', ...TIMING });
    expect(second.replaced).toEqual([initial]);
    expect(third.replaced).toEqual([second.kid]);
    expect(await statesOf()).toEqual({ [initial!]: 'active', [second.kid]: 'staged', [third.kid]: 'staged' });
    const retiredAt = async (kid: string) => ((await knex('signing_keys').where({ kid }).first('retired_at')) as { retired_at: Date }).retired_at.getTime();
    expect(await retiredAt(initial!)).toBe(second.activatesAt.getTime());
    expect(await retiredAt(second.kid)).toBe(third.activatesAt.getTime());
  });

  it('with no publication delay (a compromised key) the new key signs at once and the old one is retiring', async () => {
    const [initial] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    const rotated = await rotateSigningKey(knex, { algorithm: 'ES256', publicationDelaySeconds: 0, retirementTailSeconds: 360 });
    expect(kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks)).toEqual([rotated.kid]);
    expect(await statesOf()).toEqual({ [initial!]: 'retiring', [rotated.kid]: 'active' });
  });
});

describe('retirement', () => {
  const retire = (kid: string, options: { force?: boolean; withdrawNow?: boolean } = {}) =>
    retireSigningKey(knex, kid, { retirementTailSeconds: 360, configuredAlgorithm: 'ES256', ...options });

  it('refuses the key that signs now, naming its staged successor; --force retires it and the successor signs at once', async () => {
    const [current] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    const staged = await rotateSigningKey(knex, { algorithm: 'ES256', ...TIMING });
    expect(await retire(current!)).toEqual({
      outcome: 'refused', kid: current,
      refusal: { reason: 'current', alg: 'ES256', successor: { kid: staged.kid, activatedAt: staged.activatesAt } },
    });
    expect(await statesOf()).toEqual({ [current!]: 'active', [staged.kid]: 'staged' });

    const forced = await retire(current!, { force: true });
    expect(forced).toMatchObject({ outcome: 'retired', kid: current, alg: 'ES256', wasActive: true, promoted: staged.kid });
    expect(await statesOf()).toEqual({ [current!]: 'retiring', [staged.kid]: 'active' });
    expect(kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks)).toEqual([staged.kid]);
  });

  it('refuses the current key without a successor; --force leaves the algorithm to a new key made by the next load', async () => {
    const [current] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    expect(await retire(current!)).toMatchObject({ outcome: 'refused', refusal: { reason: 'current', alg: 'ES256', successor: undefined } });
    expect(await retire(current!, { force: true })).toMatchObject({ outcome: 'retired', wasActive: true, promoted: undefined });
    const loaded = await loadSigningKeys(knex, { algorithm: 'ES256' });
    expect(kidsOf(loaded.jwks)).not.toContain(current);
    expect(kidsOf(loaded.publicJwks)).toContain(current);
  });

  it('refuses the last key of an algorithm no longer configured; --force retires it', async () => {
    const [es256] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    await loadSigningKeys(knex, { algorithm: 'EdDSA' });
    const asEdDsaFleet = (options: { force?: boolean } = {}) => retireSigningKey(knex, es256!, { retirementTailSeconds: 360, configuredAlgorithm: 'EdDSA', ...options });
    expect(await asEdDsaFleet()).toEqual({ outcome: 'refused', kid: es256, refusal: { reason: 'last', alg: 'ES256' } });
    expect(await asEdDsaFleet({ force: true })).toMatchObject({ outcome: 'retired', kid: es256 });
  });

  it('retires a superseded key without --force; it stays published for the tail, or leaves at once with withdrawNow', async () => {
    const [first] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256' })).jwks);
    // A key superseded without scheduled retirement (rotated before migration 0004).
    const second = await rotateSigningKey(knex, { algorithm: 'ES256', publicationDelaySeconds: 0, retirementTailSeconds: 360 });
    await knex('signing_keys').where({ kid: first }).update({ retired_at: null, published_until: null });
    expect(await statesOf()).toEqual({ [first!]: 'superseded', [second.kid]: 'active' });

    const retired = await retire(first!);
    expect(retired).toMatchObject({ outcome: 'retired', wasActive: false });
    const row = await knex('signing_keys').where({ kid: first }).first('retired_at', 'published_until') as { retired_at: Date; published_until: Date };
    expect(row.published_until.getTime() - row.retired_at.getTime()).toBe(360_000);
    expect(await retire(first!)).toEqual({ outcome: 'already-retired', kid: first });

    expect(await retire(first!, { withdrawNow: true })).toMatchObject({ outcome: 'retired' });
    expect(await statesOf()).toEqual({ [first!]: 'retired', [second.kid]: 'active' });
    expect(await retire('no-such-kid')).toEqual({ outcome: 'unknown', kid: 'no-such-kid' });
  });
});

describe('scheduled rotation (signing.rotateEvery)', () => {
  const schedule = { algorithm: 'ES256' as const, encryptionSecret: SECRET, publicationDelaySeconds: 600, retirementTailSeconds: 360, rotateEverySeconds: 86_400 };

  it('stages the successor only once the publication delay before it is due, for when it is due', async () => {
    const [current] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET })).jwks);
    expect(await rotateIfDue(knex, schedule)).toBeUndefined();
    // 23 h 50 min later: exactly the publication delay before the next activation is due.
    await shiftKeyTimes(current!, -(86_400 - 600));
    const staged = await rotateIfDue(knex, schedule);
    expect(staged).toEqual(expect.any(String));
    const rows = (await knex('signing_keys').select('kid', 'activated_at')) as { kid: string; activated_at: Date }[];
    const activation = (kid: string) => rows.find((row) => row.kid === kid)!.activated_at.getTime();
    expect(activation(staged!) - activation(current!)).toBeGreaterThanOrEqual(86_400_000);
    expect(await statesOf()).toEqual({ [current!]: 'active', [staged!]: 'staged' });
    // Not due again until the staged key has signed for rotateEvery less the delay.
    expect(await rotateIfDue(knex, schedule)).toBeUndefined();
  });

  it('instances racing for a due rotation add exactly one key', async () => {
    const [current] = kidsOf((await loadSigningKeys(knex, { algorithm: 'ES256', encryptionSecret: SECRET })).jwks);
    await shiftKeyTimes(current!, -86_400);
    const results = await withSecondInstance((other) => Promise.all(
      Array.from({ length: 8 }, (_, index) => rotateIfDue(index % 2 === 0 ? knex : other, schedule)),
    ));
    expect(results.filter((kid) => kid !== undefined)).toHaveLength(1);
    expect(await storedRows()).toHaveLength(2);
  });
});

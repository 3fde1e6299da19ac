import { randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { Knex } from 'knex';
import { signingPolicyOf } from '../../src/keys/signing_policy.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey } from '../../src/keys/signing_keys.js';
import { clientOf, eventually, keyQueries, startFleet, type Fleet } from './fleet.js';

// Key rotation on a running fleet (issue 13 items 1 and 2): two instances on one PostgreSQL (one on
// PGlite, which has a single owner), the keys changed on the database as `tether keys …` does,
// every outcome checked on every instance. Durations are short in the configuration; nothing here
// asserts how long anything took, only what every instance ends up doing.

let fleet: Fleet;
let client: ReturnType<typeof clientOf>;

beforeAll(async () => {
  fleet = await startFleet({ size: 2 });
  client = clientOf(fleet);
});

afterAll(async () => {
  await client?.close();
  await fleet?.close();
});

const everyInstance = () => fleet.instances.map((_, index) => index);
const policy = () => signingPolicyOf(fleet.config);
const options = () => ({ ...policy(), algorithm: policy().algorithm, encryptionSecret: policy().encryptionSecret });

/** The kid every instance signs with now (they must agree). */
async function signingKid(): Promise<string> {
  const kids = new Set(await Promise.all(everyInstance().map(async (index) => (await client.token(index)).kid)));
  expect(kids.size).toBe(1);
  return [...kids][0]!;
}

/** A key change nobody is told about: as if NOTIFY were lost (the trigger is off for this one transaction). */
async function silently<T>(knex: Knex, change: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return knex.transaction(async (trx) => {
    await trx.raw('alter table signing_keys disable trigger signing_keys_changed');
    const result = await change(trx);
    await trx.raw('alter table signing_keys enable trigger signing_keys_changed');
    return result;
  });
}

async function databaseNow(): Promise<number> {
  const result = (await fleet.cli.raw('select now() as now')) as { rows: { now: Date }[] };
  return result.rows[0]!.now.getTime();
}

describe('a rotation reaches every running instance, without a restart', () => {
  test('the new key is published by every instance at once, signs on every instance after the publication delay, and the old one retires then', async () => {
    const before = await signingKid();
    const tokenBefore = (await client.token(0)).token;
    const rotated = await rotateSigningKey(fleet.cli, options());
    expect(rotated.replaced).toEqual([before]);

    for (const index of everyInstance()) {
      await eventually(`instance ${index} publishing ${rotated.kid}`, async () => ((await client.jwksKids(index)).includes(rotated.kid) ? true : undefined));
    }
    // Published is not signing: a token issued well before the activation is signed by the old key.
    for (const index of everyInstance()) {
      const issued = await client.token(index);
      const issuedAt = decodeJwt(issued.token).iat! * 1000;
      if (issuedAt < rotated.activatesAt.getTime() - 1000) expect(issued.kid).toBe(before);
    }

    for (const index of everyInstance()) {
      await eventually(`instance ${index} signing with ${rotated.kid}`, async () => ((await client.token(index)).kid === rotated.kid ? true : undefined));
    }
    expect(await signingKid()).toBe(rotated.kid);
    // The replaced key is retiring: still published on every instance, its tokens still valid everywhere.
    for (const index of everyInstance()) {
      expect(await client.jwksKids(index)).toEqual([rotated.kid, before]);
      const { status, body } = await client.introspect(index, tokenBefore);
      expect({ status, active: body.active }).toEqual({ status: 200, active: true });
    }
    expect((await listSigningKeys(fleet.cli)).map((key) => [key.kid, key.state])).toEqual([[rotated.kid, 'active'], [before, 'retiring']]);
  });
});

describe('every instance verifies tokens signed with a key it has not heard of (a lost notification)', () => {
  /**
   * A key that signs at once, which only instance 0 is told about: every other instance has not
   * heard of it. On PGlite (one instance) the one instance has not heard of it either, until a
   * token naming it arrives.
   */
  async function keyOnlyInstanceZeroKnows(): Promise<string> {
    const { kid } = await silently(fleet.cli, (trx) => rotateSigningKey(trx as unknown as Knex, { ...options(), publicationDelaySeconds: 0 }));
    return kid;
  }

  async function tokenSignedWith(kid: string): Promise<string> {
    await fleet.instances[0]!.app.keys.reload();
    const issued = await client.token(0);
    expect(issued.kid).toBe(kid);
    return issued.token;
  }

  const other = () => fleet.instances.length - 1;

  test('introspection: active: true', async () => {
    const kid = await keyOnlyInstanceZeroKnows();
    if (fleet.instances.length > 1) expect(await client.jwksKids(other())).not.toContain(kid);
    const token = await tokenSignedWith(kid);
    const { status, body } = await client.introspect(other(), token);
    expect({ status, active: body.active, client_id: body.client_id }).toEqual({ status: 200, active: true, client_id: 'caller' });
    // Having looked the kid up, the instance publishes it too.
    expect(await client.jwksKids(other())).toContain(kid);
  });

  test('token exchange: a new token', async () => {
    const kid = await keyOnlyInstanceZeroKnows();
    const token = await tokenSignedWith(kid);
    const { status, body } = await client.exchange(other(), token);
    expect({ status, error: body.error }).toEqual({ status: 200, error: undefined });
    expect(decodeJwt(body.access_token as string)).toMatchObject({ aud: 'https://inventory.keys.test', client_id: 'caller' });
  });

  test('revocation: 200 and the token is revoked, as every instance then says', async () => {
    const kid = await keyOnlyInstanceZeroKnows();
    const token = await tokenSignedWith(kid);
    const { status } = await client.revoke(other(), token);
    expect(status).toBe(200);
    for (const index of everyInstance()) {
      const { status: introspected, body } = await client.introspect(index, token);
      expect({ introspected, body }).toEqual({ introspected: 200, body: { active: false } });
    }
    const row = await fleet.cli('issued_tokens').where({ token_id: decodeJwt(token).jti }).first('revoked_at') as { revoked_at: Date | null };
    expect(row.revoked_at).toEqual(expect.any(Date));
  });

  test('a token signed with an old key the instance already had: introspection, exchange and revocation too', async () => {
    const token = (await client.token(0)).token;
    const last = other();
    expect((await client.introspect(last, token)).body.active).toBe(true);
    expect((await client.exchange(last, token)).status).toBe(200);
    expect((await client.revoke(last, token)).status).toBe(200);
    expect((await client.introspect(0, token)).body).toEqual({ active: false });
  });

  test('when the keys cannot be read, a token with an unknown kid is answered 503, never "revoked" with 200', async () => {
    const kid = `unknown-${randomBytes(8).toString('hex')}`;
    const forged = `${Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'at+jwt' })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.${randomBytes(64).toString('base64url')}`;
    await fleet.cli.raw('alter table signing_keys rename to signing_keys_away');
    try {
      const revoked = await client.revoke(other(), forged);
      expect({ status: revoked.status, error: revoked.body.error, retryAfter: revoked.headers.get('retry-after') }).toEqual({
        status: 503, error: 'temporarily_unavailable', retryAfter: expect.any(String),
      });
      const exchanged = await client.exchange(other(), forged);
      expect({ status: exchanged.status, error: exchanged.body.error }).toEqual({ status: 503, error: 'temporarily_unavailable' });
    } finally {
      await fleet.cli.raw('alter table signing_keys_away rename to signing_keys');
    }
    // RFC 7009 §2.2: a token that is not Tether's (its kid is unknown even after the lookup) is answered 200.
    expect((await client.revoke(other(), forged)).status).toBe(200);
    expect((await client.exchange(other(), forged)).body.error).toBe('invalid_grant');
  });
});

describe('retirement', () => {
  test('a retired key stops signing on every instance at once, exactly one successor is made, and it stays published while its tokens live', async () => {
    const retiring = await signingKid();
    const tokenBefore = (await client.token(0)).token;
    const keysBefore = (await listSigningKeys(fleet.cli)).length;
    const result = await retireSigningKey(fleet.cli, retiring, { retirementTailSeconds: policy().retirementTailSeconds, configuredAlgorithm: 'ES256', force: true });
    expect(result).toMatchObject({ outcome: 'retired', wasActive: true });

    for (const index of everyInstance()) {
      await eventually(`instance ${index} no longer signing with ${retiring}`, async () => ((await client.token(index)).kid !== retiring ? true : undefined));
    }
    const successor = await signingKid();
    for (let round = 0; round < 5; round += 1) expect(await signingKid()).toBe(successor);
    // Both instances raced to replace it: one key was made.
    expect((await listSigningKeys(fleet.cli)).length).toBe(keysBefore + 1);

    // Published for the longest token lifetime + leeway: 300 s + 60 s.
    const row = await fleet.cli('signing_keys').where({ kid: retiring }).first('retired_at', 'published_until') as { retired_at: Date; published_until: Date };
    expect(row.published_until.getTime() - row.retired_at.getTime()).toBe(360_000);
    for (const index of everyInstance()) {
      expect(await client.jwksKids(index)).toContain(retiring);
      expect((await client.introspect(index, tokenBefore)).body.active).toBe(true);
    }

    // When the tail ends (brought forward to 5 s from now here), the key leaves every JWKS by the
    // clock alone: the change was announced while the key was still published, nothing is announced
    // when it falls due.
    const [updated] = (await fleet.cli('signing_keys').where({ kid: retiring })
      .update({ published_until: fleet.cli.raw("now() + interval '5 seconds'") }).returning('published_until')) as { published_until: Date }[];
    const withdrawal = updated!.published_until;
    for (const index of everyInstance()) {
      await eventually(`instance ${index} withdrawing ${retiring}`, async () => (!(await client.jwksKids(index)).includes(retiring) ? true : undefined));
    }
    expect(await databaseNow()).toBeGreaterThanOrEqual(withdrawal.getTime());
  });
});

describe('rotation mid-burst', () => {
  test('a rotation and a forced retirement during a burst of requests on every instance: every token verifies everywhere, no 5xx', async () => {
    const size = fleet.instances.length;
    const burst = Promise.all(Array.from({ length: 48 }, (_, index) => client.tokenResponse(index % size)));
    const rotated = await rotateSigningKey(fleet.cli, { ...options(), publicationDelaySeconds: 0 });
    await retireSigningKey(fleet.cli, rotated.kid, { retirementTailSeconds: policy().retirementTailSeconds, configuredAlgorithm: 'ES256', force: true });
    const answers = [...await burst, ...await Promise.all(Array.from({ length: 16 }, (_, index) => client.tokenResponse(index % size)))];
    expect(answers.map((answer) => answer.status)).toEqual(answers.map(() => 200));
    const tokens = answers.map((answer) => answer.body.access_token as string);
    for (const index of everyInstance()) {
      const introspected = await Promise.all(tokens.map((token) => client.introspect(index, token)));
      expect(introspected.map((answer) => [answer.status, answer.body.active])).toEqual(tokens.map(() => [200, true]));
    }
  });
});

describe('an unknown-kid storm is a bounded number of database reads', () => {
  function forgedToken(kid: string): string {
    const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'at+jwt' })).toString('base64url');
    return `${header}.${Buffer.from('{"sub":"x"}').toString('base64url')}.${randomBytes(64).toString('base64url')}`;
  }

  test('one made-up kid, 40 requests: at most one read; 40 distinct kids: at most one read per second', async () => {
    const instance = fleet.instances[fleet.instances.length - 1]!;
    const index = fleet.instances.length - 1;
    const readsSince = (mark: number) => keyQueries(instance).length - mark;

    let mark = keyQueries(instance).length;
    const sameKid = forgedToken(`made-up-${randomBytes(6).toString('hex')}`);
    const answers = await Promise.all(Array.from({ length: 40 }, () => client.introspect(index, sameKid)));
    expect(answers.map((answer) => answer.body)).toEqual(Array.from({ length: 40 }, () => ({ active: false })));
    expect(readsSince(mark)).toBeLessThanOrEqual(1);

    mark = keyQueries(instance).length;
    const started = performance.now();
    const distinct = await Promise.all(Array.from({ length: 40 }, () => client.introspect(index, forgedToken(`made-up-${randomBytes(6).toString('hex')}`))));
    const seconds = (performance.now() - started) / 1000;
    expect(distinct.every((answer) => answer.status === 200 && answer.body.active === false)).toBe(true);
    expect(readsSince(mark)).toBeLessThanOrEqual(Math.ceil(seconds) + 1);

    // Revocation of a token that is not Tether's is 200 (RFC 7009 §2.2), and costs no more.
    mark = keyQueries(instance).length;
    expect((await client.revoke(index, sameKid)).status).toBe(200);
    expect(readsSince(mark)).toBe(0);
  });

  test('a kid too long to be a Tether thumbprint is never looked up', async () => {
    const index = fleet.instances.length - 1;
    const instance = fleet.instances[index]!;
    const mark = keyQueries(instance).length;
    const answers = await Promise.all(Array.from({ length: 20 }, () => client.introspect(index, forgedToken(randomBytes(3000).toString('base64url')))));
    expect(answers.map((answer) => answer.body)).toEqual(answers.map(() => ({ active: false })));
    expect(keyQueries(instance).length - mark).toBe(0);
  });

  test('1000 distinct made-up kids at once: at most two reads', async () => {
    const instance = fleet.instances[0]!;
    const mark = keyQueries(instance).length;
    const found = await Promise.all(Array.from({ length: 1000 }, () => instance.app.keys.verificationKey(`made-up-${randomBytes(6).toString('hex')}`)));
    expect(found.every((key) => key === undefined)).toBe(true);
    expect(keyQueries(instance).length - mark).toBeLessThanOrEqual(2);
  });
});

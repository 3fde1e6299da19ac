// The catalogue: every bad token differs from the valid one in exactly the property it names, and
// the ones meant to be validly signed carry Tether's real signature.
import { createHmac, createPublicKey } from 'node:crypto';
import { compactVerify, createLocalJWKSet, decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import {
  badTokenCatalogue, EXPIRED_SECONDS_AGO, FOREIGN_AUDIENCE, FOREIGN_ISSUER, type BadTokenCase, type IssuedAccessToken, type Presentation, type RunningTether,
} from '../../src/testing/index.js';
import { startTestTether } from '../support/tether.js';
import { INVOICES, LEGACY, ORDERS, REPORTS, harnessConfig } from './harness_config.js';

let tether: RunningTether;
const request = { method: 'GET', url: 'https://api.harness.test/orders?page=1' };

beforeAll(async () => {
  tether = await startTestTether({ config: harnessConfig() });
});

afterAll(async () => {
  await tether?.close();
});

const tokenOf = (presentation: Presentation) => presentation.authorization!.replace(/^\S+ /, '');
const byId = (cases: BadTokenCase[], id: string) => cases.find((check) => check.id === id)!;

/** Names of the members of `a` and `b` whose values differ. */
function changed(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((name) => JSON.stringify(a[name]) !== JSON.stringify(b[name])).sort();
}

/** Verified with Tether's current key, whatever `kid` the token names. */
async function signedByTether(token: string): Promise<boolean> {
  try {
    const [current] = tether.jwks.keys as JWK[];
    await compactVerify(token, createLocalJWKSet({ keys: [{ ...current!, kid: decodeProtectedHeader(token).kid }] }));
    return true;
  } catch {
    return false;
  }
}

describe('certificate-bound token (worker → orders)', () => {
  let valid: IssuedAccessToken;
  let cases: BadTokenCase[];

  beforeAll(async () => {
    cases = await tether.badTokens({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    valid = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
  });

  test('the checks, in order, with the answers a correct API gives', () => {
    expect(cases.map((check) => [check.id, check.expect])).toEqual([
      ['valid', { outcome: 'accepted' }],
      ...['wrong-aud', 'other-resource-aud', 'expired', 'not-yet-valid', 'wrong-iss', 'typ-jwt', 'alg-none', 'hs256-public-key', 'unknown-kid',
        'foreign-key', 'missing-cnf', 'cnf-other-certificate', 'no-certificate'].map((id) => [id, { outcome: 'rejected', status: 401, errors: ['invalid_token'] }]),
      ['scope-missing', { outcome: 'rejected', status: 403, errors: ['insufficient_scope'] }],
      ['revoked', { outcome: 'rejected', status: 401, errors: ['invalid_token'] }],
    ]);
    expect(cases.filter((check) => check.skipped)).toEqual([]);
  });

  test.each([
    ['wrong-aud', [], ['aud']],
    ['other-resource-aud', [], ['aud']],
    ['expired', [], ['exp', 'iat']],
    ['not-yet-valid', [], ['nbf']],
    ['wrong-iss', [], ['iss']],
    ['typ-jwt', ['typ'], []],
    ['unknown-kid', ['kid'], []],
    ['missing-cnf', [], ['cnf']],
    ['cnf-other-certificate', [], ['cnf']],
    ['scope-missing', [], ['scope']],
  ])('%s: header %j and claims %j changed, nothing else; signed with Tether\'s key', async (id, header, claims) => {
    const [presentation] = await byId(cases, id).present(request);
    const token = tokenOf(presentation!);
    const original = (await byId(cases, 'valid').present(request))[0]!;
    expect(changed(decodeProtectedHeader(tokenOf(original)) as never, decodeProtectedHeader(token) as never)).toEqual(header);
    expect(changed(decodeJwt(tokenOf(original)), decodeJwt(token))).toEqual(claims);
    expect(await signedByTether(token)).toBe(true);
    expect(presentation!.certificate?.certificatePem).toBe(tether.pki.clients.worker!.certificatePem);
  });

  test('the values: foreign aud and iss, another registered API, exp in the past, nbf ahead, another certificate, scope removed', async () => {
    const claims = async (id: string) => decodeJwt(tokenOf((await byId(cases, id).present(request))[0]!));
    const now = Math.floor(Date.now() / 1000);
    expect((await claims('wrong-aud')).aud).toBe(FOREIGN_AUDIENCE);
    expect((await claims('other-resource-aud')).aud).toBe(INVOICES);
    expect((await claims('wrong-iss')).iss).toBe(FOREIGN_ISSUER);
    const expired = await claims('expired');
    expect(expired.exp).toBeGreaterThanOrEqual(now - EXPIRED_SECONDS_AGO - 2);
    expect(expired.exp).toBeLessThanOrEqual(now - EXPIRED_SECONDS_AGO + 2);
    expect(expired.exp! - expired.iat!).toBe(valid.claims!.exp! - valid.claims!.iat!);
    expect((await claims('not-yet-valid')).nbf).toBeGreaterThan(now + 60);
    expect((await claims('cnf-other-certificate')).cnf).not.toEqual(valid.claims!.cnf);
    expect((await claims('scope-missing')).scope).toBeUndefined();
  });

  test('alg none: no signature; HS256: keyed with the SPKI PEM of Tether\'s public key; foreign key: Tether\'s kid, not Tether\'s signature', async () => {
    const none = tokenOf((await byId(cases, 'alg-none').present(request))[0]!);
    expect(decodeProtectedHeader(none).alg).toBe('none');
    expect(none.endsWith('.')).toBe(true);

    const hs256 = tokenOf((await byId(cases, 'hs256-public-key').present(request))[0]!);
    const [header, payload, signature] = hs256.split('.');
    const pem = createPublicKey({ key: tether.jwks.keys[0] as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    expect(createHmac('sha256', pem).update(`${header}.${payload}`).digest('base64url')).toBe(signature);

    const foreign = tokenOf((await byId(cases, 'foreign-key').present(request))[0]!);
    expect(decodeProtectedHeader(foreign).kid).toBe(tether.jwks.keys[0]!.kid);
    expect(await signedByTether(foreign)).toBe(false);
  });

  test('no-certificate: the valid token, no certificate on the connection', async () => {
    const [presentation] = await byId(cases, 'no-certificate').present(request);
    expect(presentation!.certificate).toBeUndefined();
    expect(decodeJwt(tokenOf(presentation!)).cnf).toEqual(valid.claims!.cnf);
  });

  test('revoked: a fresh token, revoked at Tether before it is presented', async () => {
    const [presentation] = await byId(cases, 'revoked').present(request);
    const { jti } = decodeJwt(tokenOf(presentation!));
    expect((await tether.database.knex('issued_tokens').where({ token_id: jti }).first()).revoked_at).toBeInstanceOf(Date);
  });
});

describe('DPoP-bound token (dpop-worker → orders)', () => {
  let cases: BadTokenCase[];
  const proofOf = (presentation: Presentation) => decodeJwt(presentation.dpop!);

  beforeAll(async () => {
    cases = await tether.badTokens({ client: 'dpop-worker', resource: ORDERS, scope: 'orders:read' });
  });

  test('the binding checks are the DPoP ones', () => {
    const ids = cases.map((check) => check.id);
    expect(ids).toEqual(expect.arrayContaining(['cnf-other-key', 'dpop-as-bearer', 'proof-wrong-htm', 'proof-wrong-htu', 'proof-wrong-ath', 'proof-replayed']));
    expect(ids).not.toContain('no-certificate');
  });

  test('the valid request: DPoP scheme, a proof for this method and URL (no query) with ath', async () => {
    const [presentation] = await byId(cases, 'valid').present(request);
    expect(presentation!.authorization).toMatch(/^DPoP /);
    expect(proofOf(presentation!)).toMatchObject({ htm: 'GET', htu: 'https://api.harness.test/orders' });
  });

  test.each([
    ['proof-wrong-htm', 'htm'],
    ['proof-wrong-htu', 'htu'],
    ['proof-wrong-ath', 'ath'],
  ])('%s: only %s differs from a correct proof', async (id, claim) => {
    const [good] = await byId(cases, 'valid').present(request);
    const [bad] = await byId(cases, id).present(request);
    expect(tokenOf(bad!)).toBe(tokenOf(good!));
    expect(changed(proofOf(good!), proofOf(bad!)).filter((name) => name !== 'jti' && name !== 'iat')).toEqual([claim]);
  });

  test('proof-replayed: the same proof twice; dpop-as-bearer: Bearer scheme, no proof; cnf-other-key: another jkt', async () => {
    const [first, second] = await byId(cases, 'proof-replayed').present(request);
    expect(second).toEqual(first);
    const [bearer] = await byId(cases, 'dpop-as-bearer').present(request);
    expect(bearer).toEqual({ authorization: expect.stringMatching(/^Bearer /) });
    const [otherKey] = await byId(cases, 'cnf-other-key').present(request);
    expect(decodeJwt(tokenOf(otherKey!)).cnf).not.toEqual(decodeJwt(tokenOf((await byId(cases, 'valid').present(request))[0]!)).cnf);
  });
});

describe('what the catalogue cannot make', () => {
  test('without Tether\'s signing key, or with a key that did not sign the token, the signed checks are skipped, saying why', async () => {
    const valid = await tether.token({ client: 'worker', resource: ORDERS, scope: 'orders:read' });
    const inputs = { valid, obtain: () => tether.token({ client: 'worker', resource: ORDERS }), revoke: tether.revoke, requiredScopes: ['orders:read'] };
    const keyless = await badTokenCatalogue(inputs);
    expect(byId(keyless, 'expired').skipped).toMatch(/signing key is not available/);
    expect(byId(keyless, 'alg-none').skipped).toBeUndefined();
    const other = await startTestTether({ config: harnessConfig() });
    try {
      const foreign = await badTokenCatalogue({ ...inputs, signingKey: await other.signingKey() });
      expect(byId(foreign, 'wrong-aud').skipped).toMatch(/did not sign the token/);
    } finally {
      await other.close();
    }
  });

  test('a bearer (unbound) token has no binding checks; an opaque token has no catalogue', async () => {
    const legacy = await tether.badTokens({ client: 'legacy', resource: LEGACY, scope: 'legacy:read' });
    expect(byId(legacy, 'missing-cnf').skipped).toMatch(/not sender-constrained/);
    expect(legacy.map((check) => check.id)).not.toContain('no-certificate');
    await expect(tether.badTokens({ client: 'worker', resource: REPORTS })).rejects.toThrow(/opaque/);
  });
});

// Recognising Tether's own tokens when they are handed back (exchange, introspection, revocation):
// each rule with the exact input that breaks it, the verdict and the private reason.
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { KeyLookupFailed, ownTokenVerifier, type PresentedToken } from '../../src/keys/own_tokens.js';

const ISSUER = 'https://tether.test';
let signingKey: CryptoKey;
let publicJwk: JWK;
let lookups: string[];

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  signingKey = pair.privateKey as CryptoKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'kid-1', alg: 'ES256', use: 'sig' };
});

beforeEach(() => {
  lookups = [];
});

function verifier(keys: Record<string, JWK> = { 'kid-1': publicJwk }, fail = false) {
  return ownTokenVerifier({
    issuer: ISSUER,
    algorithms: ['ES256'],
    keys: {
      async verificationKey(kid) {
        lookups.push(kid);
        if (fail) throw new Error('database unavailable');
        return keys[kid];
      },
    },
  });
}

async function token(options: { claims?: Record<string, unknown>; omit?: string[]; header?: Record<string, unknown>; key?: CryptoKey } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { iss: ISSUER, aud: 'https://api.test', sub: 'client-a', client_id: 'client-a', jti: randomUUID(), iat: now, exp: now + 300, ...options.claims };
  for (const name of options.omit ?? []) delete claims[name];
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'kid-1', ...options.header }).sign(options.key ?? signingKey);
}

function unrecognized(result: PresentedToken, reason: string | RegExp): void {
  expect(result.kind).toBe('unrecognized');
  expect((result as { reason: string }).reason).toMatch(reason);
}

test('a token Tether signed is its own, not expired, with its claims', async () => {
  const value = await token();
  const result = await verifier().identify(value);
  expect(result).toMatchObject({ kind: 'jwt', expired: false, claims: { iss: ISSUER, client_id: 'client-a' } });
  expect((result as { tokenId: string }).tokenId).toBe(JSON.parse(Buffer.from(value.split('.')[1]!, 'base64url').toString()).jti);
});

test('an expired one is still its own, noted expired', async () => {
  const now = Math.floor(Date.now() / 1000);
  const result = await verifier().identify(await token({ claims: { iat: now - 600, exp: now - 1 } }));
  expect(result).toMatchObject({ kind: 'jwt', expired: true, expiredReason: '"exp" claim timestamp check failed' });
});

test('a value without dots is an opaque token, identified by its hash', async () => {
  const result = await verifier().identify('opaque-token-value');
  expect(result.kind).toBe('opaque');
  expect((result as { tokenId: string }).tokenId).not.toContain('opaque-token-value');
});

test('a signature by another key under Tether\'s kid, or a payload changed under Tether\'s signature', async () => {
  const other = (await generateKeyPair('ES256')).privateKey as CryptoKey;
  unrecognized(await verifier().identify(await token({ key: other })), 'JWT not accepted: signature verification failed');
  const [header, , signature] = (await token()).split('.');
  const widened = Buffer.from(JSON.stringify({ iss: ISSUER, aud: 'https://api.test', sub: 'x', client_id: 'x', jti: 'j', iat: 1, exp: 9e9 })).toString('base64url');
  unrecognized(await verifier().identify(`${header}.${widened}.${signature}`), 'signature verification failed');
});

test('another spelling of a genuine signature (non-zero trailing bits) is not Tether\'s', async () => {
  const value = await token();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const variant = value.slice(0, -1) + alphabet[alphabet.indexOf(value.at(-1)!) + 1];
  unrecognized(await verifier().identify(variant), 'not a compact JWS');
});

test.each([
  ['typ missing', { header: { typ: undefined } }, 'unexpected "typ"'],
  ['typ JWT (an ID token)', { header: { typ: 'JWT' } }, 'unexpected "typ"'],
  ['another issuer', { claims: { iss: 'https://other.test' } }, 'unexpected "iss"'],
  ['nbf in the future', { claims: { nbf: Math.floor(Date.now() / 1000) + 120 } }, '"nbf" claim timestamp check failed'],
  ['iat not a number', { claims: { iat: 'yesterday' } }, '"iat" claim must be a number'],
  ['exp not a number', { claims: { exp: '9999999999' } }, '"exp" claim must be a number'],
  ['jti not a string', { claims: { jti: 7 } }, '"jti" claim must be a string'],
  ...['jti', 'exp', 'iat', 'sub', 'client_id', 'aud'].map((claim) => [`no ${claim}`, { omit: [claim] }, `missing required "${claim}" claim`] as const),
] as const)('%s: not Tether\'s', async (_name, options, reason) => {
  unrecognized(await verifier().identify(await token(options as never)), reason);
});

test('a genuine signature over a header with crit (an extension Tether never uses) is not Tether\'s', async () => {
  const [, payload] = (await token()).split('.');
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'kid-1', crit: ['x-ext'], 'x-ext': 1 })).toString('base64url');
  // jose will not sign an unknown critical extension: WebCrypto signs the JWS (R || S, as RFC 7518 §3.4).
  const signature = Buffer.from(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, signingKey, Buffer.from(`${header}.${payload}`))).toString('base64url');
  unrecognized(await verifier().identify(`${header}.${payload}.${signature}`), 'critical header');
});

test('kids: none, unknown, too long to be a thumbprint (never looked up), another algorithm\'s key', async () => {
  unrecognized(await verifier().identify(await token({ header: { kid: undefined } })), 'names no kid');
  unrecognized(await verifier().identify(await token({ header: { kid: 'kid-9' } })), 'is not a published Tether key');
  unrecognized(await verifier().identify(await token({ header: { kid: 'k'.repeat(200) } })), 'is not a Tether key id');
  expect(lookups).toEqual(['kid-9']);
  unrecognized(await verifier({ 'kid-1': { ...publicJwk, alg: 'ES384' } }).identify(await token()), 'is a ES384 key, the JWT says ES256');
});

test('algorithms Tether does not sign with, none included, are refused before any key lookup', async () => {
  const value = await token();
  const [, payload, signature] = value.split('.');
  for (const alg of ['none', 'HS256', 'ES384', 'es256']) {
    const header = Buffer.from(JSON.stringify({ alg, typ: 'at+jwt', kid: 'kid-1' })).toString('base64url');
    unrecognized(await verifier().identify(`${header}.${payload}.${signature}`), 'algorithm is not allowed');
  }
  // With its empty signature an `alg: none` JWT is not even JWS-shaped: looked up as an opaque token.
  const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');
  expect((await verifier().identify(`${none}.${payload}.`)).kind).toBe('opaque');
  expect(lookups).toEqual([]);
});

test('a database that cannot answer the key lookup is an error, never "not ours"', async () => {
  await expect(verifier(undefined, true).identify(await token())).rejects.toBeInstanceOf(KeyLookupFailed);
});

test('16 identifications at once import the key once and agree', async () => {
  const v = verifier();
  const value = await token();
  const results = await Promise.all(Array.from({ length: 16 }, () => v.identify(value)));
  expect(new Set(results.map((result) => result.kind))).toEqual(new Set(['jwt']));
  expect(results.every((result) => result.kind === 'jwt' && !result.expired)).toBe(true);
});

describe('a token handed back again (its signature remembered)', () => {
  test('it is Tether\'s again, with its claims parsed afresh; a forgery of it after it, refused each time', async () => {
    const v = verifier();
    const value = await token();
    const first = await v.identify(value);
    expect(first.kind).toBe('jwt');
    (first as { claims: Record<string, unknown> }).claims.sub = 'admin';
    expect(await v.identify(value)).toMatchObject({ kind: 'jwt', claims: { sub: 'client-a' }, expired: false });
    const [header, payload, signature] = value.split('.') as [string, string, string];
    const forged = `${header}.${payload}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    for (let i = 0; i < 2; i++) unrecognized(await v.identify(forged), 'signature verification failed');
    const widened = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), scope: 'admin' })).toString('base64url');
    unrecognized(await v.identify(`${header}.${widened}.${signature}`), 'signature verification failed');
  });

  test('its key withdrawn from the published keys: no longer Tether\'s', async () => {
    const published: Record<string, JWK> = { 'kid-1': publicJwk };
    const v = verifier(published);
    const value = await token();
    expect((await v.identify(value)).kind).toBe('jwt');
    delete published['kid-1'];
    unrecognized(await v.identify(value), 'is not a published Tether key');
  });

  test('another key published under its kid: the remembered token is checked against it, and is not Tether\'s', async () => {
    const published: Record<string, JWK> = { 'kid-1': publicJwk };
    const v = verifier(published);
    const value = await token();
    expect((await v.identify(value)).kind).toBe('jwt');
    const other = await generateKeyPair('ES256', { extractable: true });
    published['kid-1'] = { ...(await exportJWK(other.publicKey)), kid: 'kid-1', alg: 'ES256', use: 'sig' };
    unrecognized(await v.identify(value), 'signature verification failed');
  });

  test('the database failing on the second look is still an error, not a remembered answer', async () => {
    let fail = false;
    const v = ownTokenVerifier({ issuer: ISSUER, algorithms: ['ES256'], keys: { async verificationKey() { if (fail) throw new Error('database unavailable'); return publicJwk; } } });
    const value = await token();
    expect((await v.identify(value)).kind).toBe('jwt');
    fail = true;
    await expect(v.identify(value)).rejects.toBeInstanceOf(KeyLookupFailed);
  });
});

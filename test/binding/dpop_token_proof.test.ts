import { constants, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
// @ts-expect-error -- deep import of an untyped module of the pinned oidc-provider version: the reference
import validateDpop from 'oidc-provider/lib/helpers/validate_dpop.js';

import { tokenRequestProofCheck } from '../../src/binding/dpop_token_proof.js';
import { ALLOWED_JWS_ALGORITHMS } from '../../src/provider/client_metadata.js';
import { dpopNoncesOf } from '../../src/provider/internals.js';
import { startTether, type RunningTether } from '../../src/testing/index.js';

/**
 * Tether checks the DPoP proof of a token request itself (binding/dpop_token_proof.ts), with
 * node:crypto and a key cache, where it used to call oidc-provider's validator. Here both judge the
 * same proofs, each changed one field at a time from a valid one, on the same provider (its nonces,
 * its token endpoint URL): the same token key and jti, or the same OAuth error and description, and
 * the same `DPoP-Nonce` header. The one difference by design is listed last.
 */

let tether: RunningTether;
let provider: Provider;

beforeAll(async () => {
  tether = await startTether();
  provider = tether.app.provider;
});

afterAll(() => tether?.close());

type Alg = 'ES256' | 'PS256' | 'EdDSA' | 'Ed25519' | 'ES384';

interface ProofKey { alg: Alg; privateKey: KeyObject; jwk: Record<string, unknown> }

function keyFor(alg: Alg): ProofKey {
  const pair = alg === 'PS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'EdDSA' || alg === 'Ed25519' ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: alg === 'ES384' ? 'P-384' : 'P-256' });
  return { alg, privateKey: pair.privateKey, jwk: pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

const KEYS = { ES256: keyFor('ES256'), PS256: keyFor('PS256'), EdDSA: keyFor('EdDSA'), Ed25519: keyFor('Ed25519'), ES384: keyFor('ES384') };
const OTHER_ES256 = keyFor('ES256');

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function signature(key: ProofKey, input: string): string {
  const data = Buffer.from(input);
  if (key.alg === 'PS256') return sign('sha256', data, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64url');
  if (key.alg === 'EdDSA' || key.alg === 'Ed25519') return sign(null, data, key.privateKey).toString('base64url');
  return sign(key.alg === 'ES384' ? 'sha384' : 'sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
}

interface ProofChanges {
  key?: ProofKey;
  signer?: ProofKey;
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  rawHeader?: string;
  rawSignature?: (signed: string) => string;
}

/** A proof for POST to the token endpoint, valid unless changed. `undefined` in a change deletes the member. */
function proof(changes: ProofChanges = {}): string {
  const key = changes.key ?? KEYS.ES256;
  const header = withChanges({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk }, changes.header);
  const claims = withChanges({ jti: randomUUID(), htm: 'POST', htu: tether.tokenEndpoint, iat: Math.floor(Date.now() / 1000) }, changes.claims);
  const input = `${changes.rawHeader ?? b64(header)}.${b64(claims)}`;
  const signed = signature(changes.signer ?? key, input);
  return `${input}.${changes.rawSignature ? changes.rawSignature(signed) : signed}`;
}

function withChanges(base: Record<string, unknown>, changes: Record<string, unknown> = {}): Record<string, unknown> {
  const result = { ...base, ...changes };
  for (const [member, value] of Object.entries(changes)) if (value === undefined) delete result[member];
  return result;
}

/** A request context as both validators read it: method, the DPoP header, the route's URL, headers set. */
function contextOf(value: string | undefined, method = 'POST'): { ctx: KoaContextWithOIDC; sent: Record<string, string> } {
  const sent: Record<string, string> = {};
  const ctx = {
    method,
    get: (name: string) => (name.toLowerCase() === 'dpop' ? value ?? '' : ''),
    set: (name: string, headerValue: string) => { sent[name.toLowerCase()] = headerValue; },
    state: {},
    oidc: { provider, route: 'token', urlFor: () => tether.tokenEndpoint },
  };
  return { ctx: ctx as unknown as KoaContextWithOIDC, sent };
}

type Judge = (ctx: KoaContextWithOIDC) => Promise<unknown>;

async function judged(judge: Judge, value: string | undefined, method?: string): Promise<unknown> {
  const { ctx, sent } = contextOf(value, method);
  try {
    const result = await judge(ctx);
    return { result, sent };
  } catch (error) {
    const { error: code, error_description: description } = error as { error?: string; error_description?: string };
    return { error: code ?? String(error), description, sent };
  }
}

const tether_ = (requireNonce: boolean): Judge => tokenRequestProofCheck({ algorithms: ALLOWED_JWS_ALGORITHMS, nonces: dpopNoncesOf(provider), requireNonce: () => requireNonce });
// oidc-provider reads `requireNonce` from its configuration: Tether's dev configuration says false.
const reference: Judge = (ctx) => (validateDpop as (p: Provider, c: KoaContextWithOIDC) => Promise<unknown>)(provider, ctx);

function nextNonce(): string {
  return dpopNoncesOf(provider)!.nextChallenge();
}

const past = () => Math.floor(Date.now() / 1000) - 600;
const future = () => Math.floor(Date.now() / 1000) + 600;

const CASES: [string, () => string | undefined, string?][] = [
  ['no proof', () => undefined],
  ['a valid ES256 proof', () => proof()],
  ['a valid PS256 proof', () => proof({ key: KEYS.PS256 })],
  ['a valid EdDSA proof', () => proof({ key: KEYS.EdDSA })],
  ['a valid Ed25519 proof', () => proof({ key: KEYS.Ed25519 })],
  ['not a JWS', () => 'abc'],
  ['two segments', () => proof().split('.').slice(0, 2).join('.')],
  // Two DPoP header fields, as Node joins them (RFC 9449 §4.3 check 1: exactly one).
  ['two proofs in one header', () => `${proof()}, ${proof()}`],
  ['header not JSON', () => proof({ rawHeader: b64('{nope') })],
  ['typ missing', () => proof({ header: { typ: undefined } })],
  ['typ JWT', () => proof({ header: { typ: 'JWT' } })],
  ['typ application/dpop+jwt', () => proof({ header: { typ: 'application/dpop+jwt' } })],
  ['typ DPOP+JWT', () => proof({ header: { typ: 'DPOP+JWT' } })],
  ['alg ES384 (not allowed)', () => proof({ key: KEYS.ES384 })],
  ['alg none', () => `${b64({ typ: 'dpop+jwt', alg: 'none', jwk: KEYS.ES256.jwk })}.${b64({ jti: 'x', htm: 'POST', htu: tether.tokenEndpoint, iat: Math.floor(Date.now() / 1000) })}.`],
  ['alg HS256', () => proof({ header: { alg: 'HS256' } })],
  ['alg says PS256 over an EC key', () => proof({ header: { alg: 'PS256' } })],
  ['crit', () => proof({ header: { crit: ['exp'], exp: 1 } })],
  ['jwk missing', () => proof({ header: { jwk: undefined } })],
  ['jwk a string', () => proof({ header: { jwk: 'key' } })],
  ['jwk private', () => proof({ header: { jwk: (KEYS.ES256.privateKey.export({ format: 'jwk' })) } })],
  ['jwk of another curve', () => proof({ header: { jwk: KEYS.ES384.jwk } })],
  ['jwk x not base64url', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, x: 'not base64url!' } } })],
  ['jwk use sig', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, use: 'sig' } } })],
  ['jwk use enc', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, use: 'enc' } } })],
  ['jwk alg ES256', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, alg: 'ES256' } } })],
  ['jwk alg ES384', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, alg: 'ES384' } } })],
  ['jwk alg EdDSA under alg Ed25519', () => proof({ key: KEYS.Ed25519, header: { jwk: { ...KEYS.Ed25519.jwk, alg: 'EdDSA' } } })],
  ['jwk key_ops verify', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, key_ops: ['verify'] } } })],
  ['jwk key_ops sign', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, key_ops: ['sign'] } } })],
  ['jwk key_ops empty', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, key_ops: [] } } })],
  ['jwk key_ops not a list', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, key_ops: 'verify' } } })],
  ['jwk ext true', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, ext: true } } })],
  ['jwk ext false', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, ext: false } } })],
  ['jwk ext a string', () => proof({ header: { jwk: { ...KEYS.ES256.jwk, ext: 'yes' } } })],
  ['signed by another key', () => proof({ signer: OTHER_ES256 })],
  ['signature changed', () => proof({ rawSignature: (signed) => `${signed.startsWith('A') ? 'B' : 'A'}${signed.slice(1)}` })],
  ['signature cut short', () => proof({ rawSignature: (signed) => signed.slice(0, 40) })],
  ['iat missing', () => proof({ claims: { iat: undefined } })],
  ['iat a string', () => proof({ claims: { iat: String(Math.floor(Date.now() / 1000)) } })],
  ['iat zero', () => proof({ claims: { iat: 0 } })],
  ['iat ten minutes old', () => proof({ claims: { iat: past() } })],
  ['iat ten minutes ahead', () => proof({ claims: { iat: future() } })],
  ['jti missing', () => proof({ claims: { jti: undefined } })],
  ['jti empty', () => proof({ claims: { jti: '' } })],
  ['jti a number', () => proof({ claims: { jti: 7 } })],
  ['htm GET', () => proof({ claims: { htm: 'GET' } })],
  ['htm post', () => proof({ claims: { htm: 'post' } })],
  ['htu another path', () => proof({ claims: { htu: `${tether.issuer}/token/introspection` } })],
  ['htu another host', () => proof({ claims: { htu: 'https://evil.example/token' } })],
  ['htu with a query and a fragment', () => proof({ claims: { htu: `${tether.tokenEndpoint}?a=1#f` } })],
  ['htu not a URL', () => proof({ claims: { htu: 'token' } })],
  ['htu a number', () => proof({ claims: { htu: 1 } })],
  ['nonce a number', () => proof({ claims: { nonce: 1 } })],
  ['nonce unknown', () => proof({ claims: { nonce: 'bogus' } })],
  ['nonce the current one', () => proof({ claims: { nonce: nextNonce() } })],
  ['nonce current, iat ten minutes old', () => proof({ claims: { nonce: nextNonce(), iat: past() } })],
  ['exp past', () => proof({ claims: { exp: past() } })],
  ['exp ahead', () => proof({ claims: { exp: future() } })],
  ['exp a string', () => proof({ claims: { exp: 'soon' } })],
  ['nbf ahead', () => proof({ claims: { nbf: future() } })],
  ['nbf past', () => proof({ claims: { nbf: past() } })],
  ['claims not an object', () => { const input = `${b64({ typ: 'dpop+jwt', alg: 'ES256', jwk: KEYS.ES256.jwk })}.${b64('[1]')}`; return `${input}.${signature(KEYS.ES256, input)}`; }],
];

describe('the token request\'s DPoP proof: Tether\'s check answers as oidc-provider\'s validator', () => {
  it.each(CASES)('%s', async (_name, make) => {
    const value = make();
    const [ours, theirs] = [await judged(tether_(false), value), await judged(reference, value)];
    expect(ours).toEqual(theirs);
  });

  it('for a request whose method is not the proof\'s', async () => {
    const value = proof();
    expect(await judged(tether_(false), value, 'GET')).toEqual(await judged(reference, value, 'GET'));
  });

  it('with nonces required: no nonce and an unknown one get use_dpop_nonce and the nonce to use, the current one passes', async () => {
    expect(await judged(tether_(true), proof())).toEqual({
      error: 'use_dpop_nonce', description: 'nonce is required in the DPoP proof', sent: { 'dpop-nonce': nextNonce() },
    });
    expect(await judged(tether_(true), proof({ claims: { nonce: 'bogus' } }))).toEqual({
      error: 'use_dpop_nonce', description: 'invalid nonce in DPoP proof', sent: { 'dpop-nonce': nextNonce() },
    });
    expect(await judged(tether_(true), proof({ claims: { nonce: nextNonce() } }))).toMatchObject({ result: { thumbprint: expect.any(String) }, sent: {} });
  });

  it('checks a request\'s proof once however often the grant asks (and the key of a client once)', async () => {
    const check = tether_(false);
    const { ctx } = contextOf(proof());
    const [first, second] = [check(ctx), check(ctx)];
    expect(first).toBe(second);
    expect(await first).toMatchObject({ jti: expect.any(String) });
  });

  it('by design refuses what oidc-provider accepts in one case: a signature whose base64url is not canonical', async () => {
    // 64 bytes are 86 base64url characters whose last one carries 4 unused bits: flip one, the bytes stay.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const flipUnusedBit = (signed: string) => `${signed.slice(0, -1)}${alphabet[alphabet.indexOf(signed.at(-1)!) ^ 1]}`;
    const value = proof({ rawSignature: flipUnusedBit });
    expect(Buffer.from(flipUnusedBit(proof().split('.')[2]!), 'base64url')).toHaveLength(64);
    expect(await judged(reference, value)).toMatchObject({ result: { thumbprint: expect.any(String) } });
    expect(await judged(tether_(false), value)).toMatchObject({ error: 'invalid_dpop_proof', description: 'invalid DPoP key binding' });
  });
});

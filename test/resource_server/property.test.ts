// Property: random mutations of a valid token (or of a valid DPoP proof) made without the issuer's
// key are never accepted, and verification never fails with anything but a VerifierError.
import fc from 'fast-check';
import { createVerifier, VerifierError, type Verifier, type VerifyRequest } from '../../src/resource_server/index.js';
import {
  AUDIENCE,
  b64,
  jwksOf,
  makeCertificates,
  makeDpopKey,
  makeProof,
  makeSigningKey,
  mintAccessToken,
  rawSign,
  type CertificateFiles,
  type DpopKey,
  type SigningKey,
} from './helpers.js';

const ISSUER = 'https://issuer.test';
const URL_ = `${AUDIENCE}/1`;
const RUNS = 300;

let key: SigningKey;
let attacker: SigningKey;
let cert: CertificateFiles;
let dpopKey: DpopKey;
let verifier: Verifier;
let mtlsToken: string;
let dpopToken: string;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
  attacker = await makeSigningKey('ES256', key.kid);
  cert = makeCertificates(['client'])['client'] as CertificateFiles;
  dpopKey = await makeDpopKey('ES256');
  verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
  mtlsToken = await mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { 'x5t#S256': cert.thumbprint } } });
  dpopToken = await mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { jkt: dpopKey.jkt } } });
});

type Segments = [string, string, string];
type Mutation = (token: string) => string | Promise<string>;

const jsonValue = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1e308, '', 'none', ISSUER, AUDIENCE, `${ISSUER} `, [AUDIENCE], {}, []),
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double({ noNaN: true }),
);

const headerName = fc.constantFrom('alg', 'typ', 'kid', 'crit', 'jku', 'x5u', 'jwk', 'x5c', 'b64', 'cty', 'zip', 'enc');
const claimName = fc.constantFrom('iss', 'aud', 'sub', 'client_id', 'jti', 'exp', 'nbf', 'iat', 'scope', 'cnf', 'act');

function split(token: string): Segments {
  return token.split('.') as Segments;
}

function decodeSegment(segment: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function setOrDelete(object: Record<string, unknown>, name: string, value: unknown, remove: boolean): Record<string, unknown> {
  const copy = { ...object };
  if (remove) delete copy[name];
  else copy[name] = value;
  return copy;
}

const mutations: fc.Arbitrary<Mutation> = fc.oneof(
  // Bit flips anywhere in the string.
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 6 })).map(([at, bit]): Mutation => (t) => {
    const i = at % t.length;
    return t.slice(0, i) + String.fromCharCode(t.charCodeAt(i) ^ (1 << bit)) + t.slice(i + 1);
  }),
  // Header field changed, removed or added; payload and signature kept.
  fc.tuple(headerName, jsonValue, fc.boolean()).map(([name, value, remove]): Mutation => (t) => {
    const [h, p, s] = split(t);
    return `${b64(JSON.stringify(setOrDelete(decodeSegment(h), name, value, remove)))}.${p}.${s}`;
  }),
  // Payload claim changed, removed or added; header and signature kept.
  fc.tuple(claimName, jsonValue, fc.boolean()).map(([name, value, remove]): Mutation => (t) => {
    const [h, p, s] = split(t);
    return `${h}.${b64(JSON.stringify(setOrDelete(decodeSegment(p), name, value, remove)))}.${s}`;
  }),
  // Re-encodings of the same content: padding, standard base64, whitespace in the JSON.
  fc.constantFrom<Mutation>(
    (t) => split(t).map((seg) => Buffer.from(seg, 'base64url').toString('base64')).join('.'),
    (t) => `${t}=`,
    (t) => {
      const [h, p, s] = split(t);
      return `${h}.${p}==.${s}`;
    },
    (t) => {
      const [h, p, s] = split(t);
      return `${b64(JSON.stringify(decodeSegment(h), null, 1))}.${p}.${s}`;
    },
    (t) => {
      const [h, p, s] = split(t);
      return `${h}.${b64(` ${Buffer.from(p, 'base64url').toString('utf8')}`)}.${s}`;
    },
    (t) => t.toUpperCase(),
    (t) => `${t}.${split(t)[2]}`,
    (t) => split(t).slice(0, 2).join('.'),
    (t) => {
      const [h, p] = split(t);
      return `${h}.${p}.`;
    },
  ),
  // Truncation and extension.
  fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 4 })).map(([at, extra]): Mutation => (t) => {
    const i = at % t.length;
    return t.slice(0, i) + extra + t.slice(i);
  }),
  fc.nat().map((at): Mutation => (t) => t.slice(0, at % t.length)),
  // Re-signed by an attacker key with the issuer's kid, with a claim changed.
  fc.tuple(claimName, jsonValue).map(([name, value]): Mutation => async (t) => {
    const [h, p] = split(t);
    return rawSign(attacker, decodeSegment(h), { ...decodeSegment(p), [name]: value });
  }),
  // Unsigned re-encodings with `none` in any case.
  fc.constantFrom('none', 'None', 'NONE', 'nOnE').map((alg): Mutation => (t) => {
    const [h, p] = split(t);
    return `${b64(JSON.stringify({ ...decodeSegment(h), alg }))}.${p}.`;
  }),
);

async function outcome(request: VerifyRequest): Promise<'accepted' | VerifierError | unknown> {
  try {
    await verifier.verify(request);
    return 'accepted';
  } catch (err) {
    return err;
  }
}

test('the unmutated requests are accepted (sanity)', async () => {
  await expect(verifier.verify({ method: 'GET', url: URL_, headers: { authorization: `Bearer ${mtlsToken}` }, clientCertificate: cert.der })).resolves.toBeDefined();
  const proof = await makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: dpopToken });
  await expect(verifier.verify({ method: 'GET', url: URL_, headers: { authorization: `DPoP ${dpopToken}`, dpop: proof } })).resolves.toBeDefined();
});

test('a mutated certificate-bound access token is never accepted and only ever fails with a VerifierError', async () => {
  const codes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(mutations, async (mutate) => {
      const mutated = await mutate(mtlsToken);
      fc.pre(mutated !== mtlsToken);
      const result = await outcome({ method: 'GET', url: URL_, headers: { authorization: `Bearer ${mutated}` }, clientCertificate: cert.der });
      expect(result).toBeInstanceOf(VerifierError);
      const { code } = result as VerifierError;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }),
    { numRuns: RUNS },
  );
  // The mutations reach every stage: parsing, header rules and the signature.
  expect([...codes.values()].reduce((a, b) => a + b, 0)).toBe(RUNS);
  for (const code of ['ERR_TOKEN_MALFORMED', 'ERR_TOKEN_ALGORITHM', 'ERR_TOKEN_SIGNATURE']) expect(codes.get(code)).toBeGreaterThan(0);
});

test('a mutated DPoP proof is never accepted and only ever fails with a VerifierError', async () => {
  await fc.assert(
    fc.asyncProperty(mutations, async (mutate) => {
      // A fresh proof per run: the original is never presented, so a rejection is not a replay.
      const proof = await makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: dpopToken });
      const mutated = await mutate(proof);
      fc.pre(mutated !== proof);
      const result = await outcome({ method: 'GET', url: URL_, headers: { authorization: `DPoP ${dpopToken}`, dpop: mutated } });
      expect(result).toBeInstanceOf(VerifierError);
      expect((result as VerifierError).code).toMatch(/^ERR_DPOP_|^ERR_AUTHORIZATION_HEADER$/);
    }),
    { numRuns: RUNS },
  );
});

// A DPoP proof's `jwk` is the client's to write. Found by the mutation property (property.test.ts):
// a member with a non-ASCII character made jose's thumbprint throw a TypeError, answered as a 500
// (ERR_INTERNAL). Every such key is a 401 invalid_dpop_proof now, before any key import.
import { createVerifier, jwkThumbprint, type Verifier } from '../../src/resource_server/index.js';
import { AUDIENCE, expectCode, jwksOf, makeDpopKey, makeProof, makeSigningKey, mintAccessToken, type DpopKey } from './helpers.js';

const ISSUER = 'https://issuer.test';
const URL_ = `${AUDIENCE}/7`;

let dpopKey: DpopKey;
let verifier: Verifier;
let signing: Awaited<ReturnType<typeof makeSigningKey>>;

beforeAll(async () => {
  signing = await makeSigningKey('ES256');
  dpopKey = await makeDpopKey('ES256');
  verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(signing) });
});

const x = () => dpopKey.publicJwk.x as string;
const hostileKeys = (): Record<string, unknown>[] => [
  { ...dpopKey.publicJwk, x: `é${x().slice(1)}` },
  { ...dpopKey.publicJwk, y: `${'é'.repeat(130)}` },
  { ...dpopKey.publicJwk, x: `${x()}\u{1F600}` },
  { ...dpopKey.publicJwk, x: 'not base64url!' },
  { ...dpopKey.publicJwk, x: `${x()}=` },
];

test.each([0, 1, 2, 3, 4])('hostile jwk %#: 401 ERR_DPOP_PROOF_JWK whether or not the token is bound to its thumbprint', async (index) => {
  const jwk = hostileKeys()[index]!;
  for (const jkt of [dpopKey.jkt, jwkThumbprint(jwk as never)]) {
    const token = await mintAccessToken(signing, { issuer: ISSUER, claims: { cnf: { jkt } } });
    const proof = await makeProof(dpopKey, { htm: 'GET', htu: URL_, accessToken: token, header: { jwk } });
    const err = await expectCode(verifier.verify({ method: 'GET', url: URL_, headers: { authorization: `DPoP ${token}`, dpop: proof } }), 'ERR_DPOP_PROOF_JWK');
    expect({ status: err.status, oauthError: err.oauthError }).toEqual({ status: 401, oauthError: 'invalid_dpop_proof' });
  }
});

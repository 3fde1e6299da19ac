// Many verifications in a row through the caches the hot path relies on (per-socket certificate
// thumbprint, the JWKS cache, the DPoP key cache, the replay store). How fast they run is measured by
// `npm run bench -- verifier` (docs/benchmarks.md), never here: this checks that the cached path gives
// the same answers as the first call, request after request.
import * as jose from 'jose';
import { createVerifier, VerifierError } from '../../src/resource_server/index.js';
import { AUDIENCE, jwksOf, makeCertificates, makeDpopKey, makeProof, makeSigningKey, mintAccessToken, type CertificateFiles } from './helpers.js';

const ISSUER = 'https://issuer.test';
const REQUESTS = 200;

test('a certificate-bound token verifies the same way 200 times, as jose.jwtVerify does', async () => {
  const key = await makeSigningKey('ES256');
  const cert = makeCertificates(['client'])['client'] as CertificateFiles;
  const token = await mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { 'x5t#S256': cert.thumbprint } } });
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
  const request = { method: 'GET', url: AUDIENCE, headers: { authorization: `Bearer ${token}` }, clientCertificate: cert.thumbprint };
  const { payload } = await jose.jwtVerify(token, key.publicKey, { issuer: ISSUER, audience: AUDIENCE, typ: 'at+jwt', algorithms: ['ES256'] });
  for (let i = 0; i < REQUESTS; i++) expect(await verifier.verify(request)).toEqual(payload);
  // The cached thumbprint is still compared: another certificate is refused after the warm run.
  await expect(verifier.verify({ ...request, clientCertificate: 'A'.repeat(43) })).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_MISMATCH' });
});

test('a DPoP-bound token verifies with 200 fresh proofs, and each proof is refused the second time', async () => {
  const key = await makeSigningKey('ES256');
  const dpopKey = await makeDpopKey('ES256');
  const token = await mintAccessToken(key, { issuer: ISSUER, claims: { cnf: { jkt: dpopKey.jkt } } });
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: jwksOf(key) });
  const proofs = await Promise.all(Array.from({ length: REQUESTS }, () => makeProof(dpopKey, { htm: 'GET', htu: AUDIENCE, accessToken: token })));
  const present = (proof: string) => verifier.verify({ method: 'GET', url: AUDIENCE, headers: { authorization: `DPoP ${token}`, dpop: proof } });
  for (const proof of proofs) expect((await present(proof)).cnf?.jkt).toBe(dpopKey.jkt);
  const replays = await Promise.allSettled(proofs.map(present));
  expect(replays.every((result) => result.status === 'rejected' && (result.reason as VerifierError).code === 'ERR_DPOP_PROOF_REPLAYED')).toBe(true);
});

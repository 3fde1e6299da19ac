/**
 * Pair 4, in its own process: `tether-oauth-resource-server`'s verify() of an mTLS-bound Tether token,
 * in-process, against plain `jose.jwtVerify` with a local key, and node:crypto's synchronous ES256
 * verify of the same signature as the ceiling. Rounds alternate the order of the variants.
 *
 * The signature step alone is measured twice, as jose does it (WebCrypto `subtle.verify` with the
 * imported CryptoKey) and as a hand-written step would (synchronous node:crypto with a cached
 * KeyObject): the difference is what replacing jose's signature check could buy verify(), and the
 * verifier keeps jose's unless it is worth it (docs/benchmarks.md, pair 4).
 *
 * IPC in: { type: 'run', token, jwks, thumbprint, issuer, audience, rounds, seconds }
 * IPC out: { type: 'result', result: VerifierBenchResult }
 */
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import * as jose from 'jose';
import { createVerifier } from '../../src/resource_server/index.js';

export interface VerifierBenchInput {
  token: string;
  jwks: { keys: jose.JWK[] };
  thumbprint: string;
  issuer: string;
  audience: string;
  rounds: number;
  seconds: number;
}

export interface VerifierBenchResult {
  /** Per round, verifications per second, one operation at a time (awaited). */
  sequential: { jose: number[]; tether: number[]; nodeCryptoSync: number[]; webCrypto: number[] };
  /** Per round, verifications per second with 10 in flight (what a busy API does). */
  concurrent10: { jose: number[]; tether: number[] };
}

async function rateOf(operation: () => unknown, seconds: number, inFlight = 1): Promise<number> {
  // Warm up (JIT, key caches) outside the timed window.
  for (let i = 0; i < 200; i++) await operation();
  const deadline = performance.now() + seconds * 1000;
  let count = 0;
  const worker = async () => {
    while (true) {
      for (let i = 0; i < 32; i++) await operation();
      count += 32;
      if (performance.now() >= deadline) return;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return count / ((performance.now() - started) / 1000);
}

async function run(input: VerifierBenchInput): Promise<VerifierBenchResult> {
  const jwk = input.jwks.keys.find((key) => key.kty === 'EC')!;
  const joseKey = await jose.importJWK(jwk, 'ES256');
  const joseOptions = { issuer: input.issuer, audience: input.audience, typ: 'at+jwt', algorithms: ['ES256'], clockTolerance: 5 };
  const verifier = createVerifier({ issuer: input.issuer, audience: input.audience, jwks: input.jwks as never });
  // What the middleware passes for an mTLS-bound token: the client certificate's thumbprint, cached per socket.
  const request = {
    method: 'GET',
    url: `${input.audience}/orders/1`,
    headers: { authorization: `Bearer ${input.token}` },
    clientCertificate: input.thumbprint,
  };
  const nodeKey = createPublicKey({ key: jwk as never, format: 'jwk' });
  const webKey = await crypto.subtle.importKey('jwk', jwk as never, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const at = input.token.lastIndexOf('.');
  const signingInput = Buffer.from(input.token.slice(0, at));
  const signature = Buffer.from(input.token.slice(at + 1), 'base64url');

  const variants = {
    jose: () => jose.jwtVerify(input.token, joseKey, joseOptions),
    tether: () => verifier.verify(request),
    nodeCryptoSync: () => {
      if (!verifySignature('sha256', signingInput, { key: nodeKey, dsaEncoding: 'ieee-p1363' }, signature)) throw new Error('bad signature');
    },
    webCrypto: async () => {
      if (!(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, webKey, signature, signingInput))) throw new Error('bad signature');
    },
  };
  // Every variant must accept the token before anything is timed.
  await variants.jose();
  await variants.tether();
  variants.nodeCryptoSync();
  await variants.webCrypto();

  const result: VerifierBenchResult = { sequential: { jose: [], tether: [], nodeCryptoSync: [], webCrypto: [] }, concurrent10: { jose: [], tether: [] } };
  const names = ['jose', 'tether', 'nodeCryptoSync', 'webCrypto'] as const;
  for (let round = 0; round < input.rounds; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) result.sequential[name].push(await rateOf(variants[name], input.seconds));
    for (const name of order) {
      if (name === 'jose' || name === 'tether') result.concurrent10[name].push(await rateOf(variants[name], input.seconds, 10));
    }
  }
  return result;
}

process.once('message', (message) => {
  run(message as VerifierBenchInput).then(
    (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
    (error: Error) => process.send!({ type: 'error', error: error.stack ?? String(error) }, () => process.exit(1)),
  );
});

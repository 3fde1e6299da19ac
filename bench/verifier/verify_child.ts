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
  /** Per round, verifications per second, one operation at a time (awaited), the variants interleaved. */
  sequential: { jose: number[]; tether: number[]; nodeCryptoSync: number[]; webCrypto: number[] };
  /**
   * Per round, verifications per second with 10 in flight (what a busy API does), interleaved the
   * same way: WebCrypto runs on Node's thread pool, a synchronous verify on the event loop.
   */
  concurrent10: { jose: number[]; tether: number[]; nodeCryptoSync: number[]; webCrypto: number[] };
}

const SLICE = 32;
/** Bounds one round's loop whatever the clock does. */
const MAX_SLICES_PER_ROUND = 100_000;

/**
 * The variants take turns in slices of {@link SLICE} operations per worker (the order reversed
 * every other turn) for about `seconds` each, and each variant's rate is its operations over the time
 * its own slices took. On a shared machine whose load swings within seconds, this keeps the swings
 * out of the ratios: every variant runs under the same load, a few milliseconds apart.
 */
async function interleavedRates<Name extends string>(operations: Record<Name, () => unknown>, seconds: number, inFlight = 1): Promise<Record<Name, number>> {
  const names = Object.keys(operations) as Name[];
  const spent = new Map<Name, number>(names.map((name) => [name, 0]));
  // Warm up (JIT, key caches) outside the timed window.
  for (const name of names) for (let i = 0; i < 200; i++) await operations[name]();
  const deadline = performance.now() + seconds * 1000 * names.length;
  let slices = 0;
  for (; slices < MAX_SLICES_PER_ROUND && performance.now() < deadline; slices++) {
    for (const name of slices % 2 === 0 ? names : [...names].reverse()) {
      const started = performance.now();
      await Promise.all(Array.from({ length: inFlight }, async () => {
        for (let i = 0; i < SLICE; i++) await operations[name]();
      }));
      spent.set(name, spent.get(name)! + performance.now() - started);
    }
  }
  return Object.fromEntries(names.map((name) => [name, (slices * SLICE * inFlight) / (spent.get(name)! / 1000)])) as Record<Name, number>;
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

  const result: VerifierBenchResult = {
    sequential: { jose: [], tether: [], nodeCryptoSync: [], webCrypto: [] },
    concurrent10: { jose: [], tether: [], nodeCryptoSync: [], webCrypto: [] },
  };
  const names = ['jose', 'tether', 'nodeCryptoSync', 'webCrypto'] as const;
  for (let round = 0; round < input.rounds; round++) {
    const sequential = await interleavedRates(variants, input.seconds);
    const concurrent = await interleavedRates(variants, input.seconds, 10);
    for (const name of names) {
      result.sequential[name].push(sequential[name]);
      result.concurrent10[name].push(concurrent[name]);
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

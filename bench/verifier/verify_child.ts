/**
 * Pair 4, in its own process: `tether-oauth-resource-server`'s verify() of an mTLS-bound Tether token,
 * in-process, against plain `jose.jwtVerify` with a local key, and node:crypto's synchronous ES256
 * verify of the same signature as the ceiling. Rounds alternate the order of the variants.
 *
 * `tether` is a verifier that checks every signature (`signatureCacheSize: 0`): the same work as
 * jose and the ceiling, token after token. `tetherSeen` is the default verifier, which remembers the
 * tokens whose signature verified (signature_memo.ts), given the same token again: what an API does
 * with a token its client sends on every request.
 *
 * The ceiling is node:crypto's cheapest call: the cached KeyObject passed alone with the signature
 * already in DER (converted once, before any timing), so that it is the signature check and nothing
 * else. The signature step is also measured as jose does it (WebCrypto `subtle.verify` with the
 * imported CryptoKey) and as node:crypto's documented form for a JWS signature, `{ key, dsaEncoding:
 * 'ieee-p1363' }`, which costs more per call than the KeyObject alone (docs/benchmarks.md, pair 4).
 *
 * With `allCores`, the child is not pinned and measures only verify() against jose.jwtVerify, 10 in
 * flight, with the CPU each verification took in the whole process: WebCrypto can use the thread
 * pool's other cores, a synchronous verify cannot.
 *
 * IPC in: { type: 'run', token, jwks, thumbprint, issuer, audience, rounds, seconds, allCores? }
 * IPC out: { type: 'result', result: VerifierBenchResult } (or AllCoresResult with `allCores`)
 */
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import * as jose from 'jose';
import { ecdsaSignatureToDer } from '../../packages/resource-server/src/jws_signature.js';
import { createVerifier } from '../../src/resource_server/index.js';

export interface VerifierBenchInput {
  token: string;
  jwks: { keys: jose.JWK[] };
  thumbprint: string;
  issuer: string;
  audience: string;
  rounds: number;
  seconds: number;
  allCores?: boolean;
}

/** Unpinned, 10 in flight: per round, verifications per second and µs of process CPU (all threads) per verification. */
export interface AllCoresResult {
  rates: { jose: number[]; tether: number[] };
  cpuMicros: { jose: number[]; tether: number[] };
}

export interface VerifierBenchResult {
  /** Filled by the section from the unpinned child. */
  allCores?: AllCoresResult;
  /** Per round, verifications per second, one operation at a time (awaited), the variants interleaved. */
  sequential: Rates;
  /**
   * Per round, verifications per second with 10 in flight (what a busy API does), interleaved the
   * same way: WebCrypto runs on Node's thread pool, a synchronous verify on the event loop.
   */
  concurrent10: Rates;
}

/**
 * Per variant, one rate per round. `nodeCryptoSync`: the KeyObject alone, DER signature (the
 * ceiling); `nodeCryptoP1363`: `{ key, dsaEncoding: 'ieee-p1363' }` with the JWS signature as it is;
 * `webCrypto`: `subtle.verify`, what jose calls.
 */
export interface Rates {
  jose: number[];
  tether: number[];
  tetherSeen: number[];
  nodeCryptoSync: number[];
  nodeCryptoP1363: number[];
  webCrypto: number[];
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
  return (await interleaved(operations, seconds, inFlight)).rates;
}

/** {@link interleavedRates}, with the process CPU (every thread, from getrusage) per operation. */
async function interleaved<Name extends string>(operations: Record<Name, () => unknown>, seconds: number, inFlight: number): Promise<{ rates: Record<Name, number>; cpuMicros: Record<Name, number> }> {
  const names = Object.keys(operations) as Name[];
  const spent = new Map<Name, number>(names.map((name) => [name, 0]));
  const cpu = new Map<Name, number>(names.map((name) => [name, 0]));
  // Warm up (JIT, key caches) outside the timed window.
  for (const name of names) for (let i = 0; i < 200; i++) await operations[name]();
  const deadline = performance.now() + seconds * 1000 * names.length;
  let slices = 0;
  for (; slices < MAX_SLICES_PER_ROUND && performance.now() < deadline; slices++) {
    for (const name of slices % 2 === 0 ? names : [...names].reverse()) {
      const started = performance.now();
      const cpuBefore = process.cpuUsage();
      await Promise.all(Array.from({ length: inFlight }, async () => {
        for (let i = 0; i < SLICE; i++) await operations[name]();
      }));
      const used = process.cpuUsage(cpuBefore);
      spent.set(name, spent.get(name)! + performance.now() - started);
      cpu.set(name, cpu.get(name)! + used.user + used.system);
    }
  }
  const operationsRun = slices * SLICE * inFlight;
  const per = <T>(value: (name: Name) => T) => Object.fromEntries(names.map((name) => [name, value(name)])) as Record<Name, T>;
  return { rates: per((name) => operationsRun / (spent.get(name)! / 1000)), cpuMicros: per((name) => cpu.get(name)! / operationsRun) };
}

async function run(input: VerifierBenchInput): Promise<VerifierBenchResult | AllCoresResult> {
  const jwk = input.jwks.keys.find((key) => key.kty === 'EC')!;
  const joseKey = await jose.importJWK(jwk, 'ES256');
  const joseOptions = { issuer: input.issuer, audience: input.audience, typ: 'at+jwt', algorithms: ['ES256'], clockTolerance: 5 };
  const verifier = createVerifier({ issuer: input.issuer, audience: input.audience, jwks: input.jwks as never, signatureCacheSize: 0 });
  const remembering = createVerifier({ issuer: input.issuer, audience: input.audience, jwks: input.jwks as never });
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
  const derSignature = ecdsaSignatureToDer(signature, 32);
  const p1363Key = { key: nodeKey, dsaEncoding: 'ieee-p1363' } as const;

  const variants = {
    jose: () => jose.jwtVerify(input.token, joseKey, joseOptions),
    tether: () => verifier.verify(request),
    tetherSeen: () => remembering.verify(request),
    nodeCryptoSync: () => {
      if (!verifySignature('sha256', signingInput, nodeKey, derSignature)) throw new Error('bad signature');
    },
    nodeCryptoP1363: () => {
      if (!verifySignature('sha256', signingInput, p1363Key, signature)) throw new Error('bad signature');
    },
    webCrypto: async () => {
      if (!(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, webKey, signature, signingInput))) throw new Error('bad signature');
    },
  };
  // Every variant must accept the token before anything is timed.
  await variants.jose();
  if (input.allCores) return allCores({ jose: variants.jose, tether: variants.tether }, input);
  await variants.tether();
  await variants.tetherSeen();
  variants.nodeCryptoSync();
  variants.nodeCryptoP1363();
  await variants.webCrypto();

  const result: VerifierBenchResult = {
    sequential: { jose: [], tether: [], tetherSeen: [], nodeCryptoSync: [], nodeCryptoP1363: [], webCrypto: [] },
    concurrent10: { jose: [], tether: [], tetherSeen: [], nodeCryptoSync: [], nodeCryptoP1363: [], webCrypto: [] },
  };
  const names = ['jose', 'tether', 'tetherSeen', 'nodeCryptoSync', 'nodeCryptoP1363', 'webCrypto'] as const;
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

async function allCores(variants: { jose: () => unknown; tether: () => unknown }, input: VerifierBenchInput): Promise<AllCoresResult> {
  await variants.tether();
  const result: AllCoresResult = { rates: { jose: [], tether: [] }, cpuMicros: { jose: [], tether: [] } };
  for (let round = 0; round < input.rounds; round++) {
    const { rates, cpuMicros } = await interleaved(variants, input.seconds, 10);
    for (const name of ['jose', 'tether'] as const) {
      result.rates[name].push(rates[name]);
      result.cpuMicros[name].push(cpuMicros[name]);
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

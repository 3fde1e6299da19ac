import { generateKeyPairSync } from 'node:crypto';
import type { JWK } from 'jose';
// @ts-expect-error -- deep import of an untyped module of the pinned oidc-provider version: the helper that signs every JWT access token
import { sign as oidcProviderSign } from 'oidc-provider/lib/helpers/jwt.js';
import type { BenchContext } from '../lib/context.js';
import { median, round } from '../lib/stats.js';
import { signingKeyOf } from '../../src/provider/node_crypto_signing_key.js';
import { p1363OptionKeyOf } from './node_crypto_key.js';

/**
 * Access-token signing as oidc-provider does it (its lib/helpers/jwt.js `sign`, which every JWT
 * access token goes through), with the key as a private JWK (jose, over WebCrypto: what oidc-provider
 * does by default, and bare oidc-provider in the load pairs), as the ExternalSigningKey Tether ships
 * (node:crypto's synchronous sign given the KeyObject alone, src/provider/node_crypto_signing_key.ts),
 * and as the same key calling node:crypto with `{ key, dsaEncoding }` (node_crypto_key.ts), in this
 * process, interleaved round by round: CPU per signature (process.cpuUsage, every thread) and
 * signatures per second, one at a time and 10 in flight.
 */
export interface SigningRun {
  key: SigningKeyName;
  inFlight: number;
  perSecond: number;
  cpuMicros: number;
}

const KEY_NAMES = ['jose (private JWK)', 'node:crypto, KeyObject alone (shipped)', "node:crypto, { key, dsaEncoding: 'ieee-p1363' }"] as const;
type SigningKeyName = (typeof KEY_NAMES)[number];

type Sign = (payload: Record<string, unknown>, key: unknown, alg: string, options: Record<string, unknown>) => Promise<string>;

const PAYLOAD = { jti: 'bench', sub: 'orders-worker', client_id: 'orders-worker', scope: 'orders:read', cnf: { 'x5t#S256': 'x'.repeat(43) } };

async function measure(key: unknown, inFlight: number, seconds: number): Promise<{ perSecond: number; cpuMicros: number }> {
  const signOnce = () => (oidcProviderSign as Sign)({ ...PAYLOAD }, key, 'ES256', { typ: 'at+jwt', audience: 'https://orders.example.test', expiresIn: 300, issuer: 'https://localhost' });
  for (let i = 0; i < 200; i++) await signOnce();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let count = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < deadline) {
      await signOnce();
      count++;
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return { perSecond: round(count / elapsed), cpuMicros: round((cpu.user + cpu.system) / count, 1) };
}

export async function signingSection(context: BenchContext): Promise<SigningRun[]> {
  const jwk = { ...(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) as JWK), alg: 'ES256', kid: 'bench', use: 'sig' };
  const keys = [[KEY_NAMES[0], jwk], [KEY_NAMES[1], signingKeyOf(jwk)], [KEY_NAMES[2], p1363OptionKeyOf(jwk)]] as const;
  const seconds = context.options.quick ? 0.5 : 2;
  const runs: SigningRun[] = [];
  context.pinning.pin(process.pid, 'server');
  try {
    for (let round = 0; round < context.options.rounds; round++) {
      const order = round % 2 === 0 ? keys : [...keys].reverse();
      for (const inFlight of [1, 10]) {
        for (const [name, key] of order) runs.push({ key: name, inFlight, ...(await measure(key, inFlight, seconds)) });
      }
    }
  } finally {
    context.pinning.release(process.pid);
  }
  for (const inFlight of [1, 10]) {
    for (const [name] of keys) {
      const mine = runs.filter((run) => run.key === name && run.inFlight === inFlight);
      context.log(`signing, ${inFlight} in flight, ${name}: ${median(mine.map((run) => run.perSecond))}/s, ${median(mine.map((run) => run.cpuMicros))} µs CPU per signature`);
    }
  }
  return runs;
}

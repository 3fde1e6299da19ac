/**
 * The client's cache, measured against what it saves: a cache hit of `getToken` against a token
 * request to a real Tether, and 100 concurrent callers of a cold entry (one token request, single
 * flight) against 100 callers that each make their own.
 *
 *   node --import tsx bench/client/cache_bench.ts [--hits 200000] [--requests 200] [--rounds 5] [--json]
 *
 * Tether runs in this process (`startTether`, in-memory PGlite; `DATABASE_URL` for PostgreSQL: the
 * database there is migrated and left in place), with the development configuration, over HTTPS
 * on loopback; the client is `orders-worker` (tls_client_auth, certificate-bound tokens). Absolute
 * figures move with the machine's load; the ratios of one run hold (docs/client.md quotes one).
 */
import { performance } from 'node:perf_hooks';
import { fetch as undiciFetch } from 'undici';
import { createTokenCache, createTokenClient, type FetchFunction, type TokenClient } from '../../packages/client/src/index.js';
import type { AccessToken } from '../../packages/client/src/access_token.js';
import { openDatabase } from '../../src/storage/database.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { startTether, type RunningTether } from '../../src/testing/index.js';
import { median, round } from '../lib/stats.js';

const ORDERS = { resource: 'https://orders.example.test', scopes: ['orders:read'] };

const argument = (name: string, fallback: number) => {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
};
const HITS = argument('--hits', 200_000);
const REQUESTS = argument('--requests', 200);
const ROUNDS = argument('--rounds', 5);
const CONCURRENT = 100;

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** undici's fetch, counting token requests. */
function countingFetch(): { fetch: FetchFunction; tokenRequests: () => number } {
  let count = 0;
  return {
    fetch: (input, init) => {
      if (input.endsWith('/token')) count += 1;
      return undiciFetch(input, init);
    },
    tokenRequests: () => count,
  };
}

function clientOf(tether: RunningTether, fetch?: FetchFunction): TokenClient {
  const certificate = tether.pki.clients['orders-worker']!;
  return createTokenClient({
    issuer: tether.issuer, clientId: 'orders-worker', auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
    tls: { cert: certificate.certificatePem, key: certificate.privateKeyPem, ca: tether.pki.ca.certificatePem }, fetch,
  });
}

/** ns per warm `getToken` (normalization, key, lookup, LRU touch, await), and per bare `TokenCache.get`. */
async function measureHits(client: TokenClient, token: AccessToken) {
  const cache = createTokenCache();
  const key = 'k';
  await cache.get(key, async () => token);
  const perRound: { getToken: number; cacheGet: number }[] = [];
  for (let round_ = 0; round_ < ROUNDS; round_ += 1) {
    let started = performance.now();
    for (let i = 0; i < HITS; i += 1) await client.getToken(ORDERS);
    const getToken = ((performance.now() - started) * 1e6) / HITS;
    started = performance.now();
    for (let i = 0; i < HITS; i += 1) await cache.get(key, async () => token);
    const cacheGet = ((performance.now() - started) * 1e6) / HITS;
    perRound.push({ getToken, cacheGet });
  }
  return { getTokenNs: median(perRound.map((r) => r.getToken)), cacheGetNs: median(perRound.map((r) => r.cacheGet)) };
}

/** µs per token request: the entry dropped, then `getToken` (one POST to /token over a kept-alive TLS connection). */
async function measureRequests(client: TokenClient) {
  const latencies: number[] = [];
  for (let i = 0; i < REQUESTS; i += 1) {
    client.invalidate(await client.getToken(ORDERS));
    const started = performance.now();
    await client.getToken(ORDERS);
    latencies.push((performance.now() - started) * 1000);
  }
  return { medianUs: median(latencies), p95Us: percentile(latencies, 95) };
}

/** 100 concurrent callers of a cold entry: one client (single flight) vs 100 clients (one request each). */
async function measureConcurrentMisses(tether: RunningTether) {
  const shared = countingFetch();
  const single = clientOf(tether, shared.fetch);
  const separate = countingFetch();
  const many = Array.from({ length: CONCURRENT }, () => clientOf(tether, separate.fetch));
  // Discovery and connections first: only the token requests are timed.
  await single.getToken(ORDERS);
  await Promise.all(many.map(async (client) => client.invalidate(await client.getToken(ORDERS))));
  const rounds: { singleMs: number; singleRequests: number; manyMs: number; manyRequests: number }[] = [];
  for (let round_ = 0; round_ < ROUNDS; round_ += 1) {
    single.invalidate(await single.getToken(ORDERS));
    let before = shared.tokenRequests();
    let started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENT }, () => single.getToken(ORDERS)));
    const singleMs = performance.now() - started;
    const singleRequests = shared.tokenRequests() - before;

    before = separate.tokenRequests();
    started = performance.now();
    const tokens = await Promise.all(many.map((client) => client.getToken(ORDERS)));
    const manyMs = performance.now() - started;
    const manyRequests = separate.tokenRequests() - before;
    tokens.forEach((token, index) => many[index]!.invalidate(token));
    rounds.push({ singleMs, singleRequests, manyMs, manyRequests });
  }
  await Promise.all([single, ...many].map((client) => client.close()));
  return {
    singleFlightMs: median(rounds.map((r) => r.singleMs)),
    singleFlightRequests: Math.max(...rounds.map((r) => r.singleRequests)),
    separateMs: median(rounds.map((r) => r.manyMs)),
    separateRequests: Math.min(...rounds.map((r) => r.manyRequests)),
  };
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const database = databaseUrl ? await openDatabase({ url: databaseUrl }) : undefined;
  if (database) await migrateToLatest(database.knex);
  const tether = await startTether(database ? { database } : {});
  try {
    const client = clientOf(tether);
    const token = await client.getToken(ORDERS);
    const requests = await measureRequests(client);
    const hits = await measureHits(client, token);
    await client.close();
    const concurrent = await measureConcurrentMisses(tether);
    const report = {
      database: database ? 'postgresql' : 'pglite',
      hit: { getTokenNs: round(hits.getTokenNs), cacheGetNs: round(hits.cacheGetNs) },
      tokenRequest: { medianUs: round(requests.medianUs), p95Us: round(requests.p95Us) },
      requestPerHit: round((requests.medianUs * 1000) / hits.getTokenNs),
      concurrentMisses: {
        callers: CONCURRENT,
        singleFlight: { ms: round(concurrent.singleFlightMs, 1), tokenRequests: concurrent.singleFlightRequests },
        separateClients: { ms: round(concurrent.separateMs, 1), tokenRequests: concurrent.separateRequests },
      },
    };
    if (process.argv.includes('--json')) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const lines = [
      `tether-oauth-client cache (Tether on ${report.database}, orders-worker, certificate-bound; medians of ${ROUNDS} rounds)`,
      `  cache hit, getToken()                ${report.hit.getTokenNs} ns`,
      `  cache hit, TokenCache.get()          ${report.hit.cacheGetNs} ns`,
      `  token request (POST /token)          ${report.tokenRequest.medianUs} µs median, ${report.tokenRequest.p95Us} µs p95`,
      `  a token request costs                ${report.requestPerHit} cache hits`,
      `  ${CONCURRENT} concurrent misses, one client   ${report.concurrentMisses.singleFlight.tokenRequests} token request(s), ${report.concurrentMisses.singleFlight.ms} ms`,
      `  ${CONCURRENT} callers, ${CONCURRENT} clients (no sharing) ${report.concurrentMisses.separateClients.tokenRequests} token requests, ${report.concurrentMisses.separateClients.ms} ms`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await tether.close();
    await database?.close();
  }
}

await main();

/**
 * Pair 5, the test-harness half: how long `startTether()` takes in a fresh process, to the first
 * token, the first time and each further time (a test file that starts one Tether per test).
 *
 * argv: <further starts>
 * IPC out: { type: 'result', result: StartTetherTimes } (milliseconds)
 */
import { request } from 'undici';

export interface StartTetherTimes {
  /** From process start (performance.timeOrigin) to the first token. */
  processStartToFirstToken: number;
  /** `await import('…/testing/start_tether.js')` (oidc-provider, knex, PGlite…). */
  importHarness: number;
  /** First startTether() call in the process to its first token (imports already done). */
  firstStartToToken: number;
  /** Each further startTether() call to its first token (the previous one closed). */
  furtherStartToToken: number[];
}

const further = Number(process.argv[2] ?? 3);

async function firstToken(tether: import('../../src/testing/start_tether.js').RunningTether): Promise<void> {
  const dispatcher = tether.dispatcherFor('orders-worker');
  const response = await request(tether.tokenEndpoint, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&client_id=orders-worker&resource=https%3A%2F%2Forders.example.test&scope=orders%3Aread',
  });
  const body = (await response.body.json()) as { access_token?: string };
  if (response.statusCode !== 200 || !body.access_token) throw new Error(`token request failed: ${response.statusCode} ${JSON.stringify(body)}`);
}

async function run(): Promise<StartTetherTimes> {
  const importStarted = performance.now();
  const { startTether } = await import('../../src/testing/start_tether.js');
  const importHarness = performance.now() - importStarted;

  const firstStarted = performance.now();
  const first = await startTether();
  await firstToken(first);
  const processStartToFirstToken = performance.now();
  const firstStartToToken = processStartToFirstToken - firstStarted;
  await first.close();

  const furtherStartToToken: number[] = [];
  for (let i = 0; i < further; i++) {
    const started = performance.now();
    const tether = await startTether();
    await firstToken(tether);
    furtherStartToToken.push(performance.now() - started);
    await tether.close();
  }
  return { processStartToFirstToken, importHarness, firstStartToToken, furtherStartToToken };
}

run().then(
  (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
  (error: Error) => process.send!({ type: 'error', error: error.stack ?? String(error) }, () => process.exit(1)),
);

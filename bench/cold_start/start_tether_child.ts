/**
 * Pair 5, the test-harness half: how long `startTether()` from `tether-oauth/testing` takes in a fresh
 * process, to the first token, the first time and each further time (a test file that starts one
 * Tether per test).
 *
 * argv: <further starts>
 * IPC out: { type: 'result', result: StartTetherTimes } (milliseconds)
 */
export interface StartTetherTimes {
  /** From process start (performance.timeOrigin) to the first token. */
  processStartToFirstToken: number;
  /** `await import('tether-oauth/testing')` (oidc-provider, knex, PGlite…). */
  importHarness: number;
  /** First startTether() call in the process to its first token (imports already done). */
  firstStartToToken: number;
  /** Each further startTether() call to its first token (the previous one closed). */
  furtherStartToToken: number[];
  /**
   * Each `close()` after a token, first start's included: an in-memory database given back is emptied
   * for the next start there (src/storage/pglite_reuse.ts), so that work is reported with the starts.
   */
  close: number[];
}

const further = Number(process.argv[2] ?? 3);
type Harness = typeof import('../../src/testing/index.js');

/** startTether() and one client_credentials token through the real token endpoint, then close. */
async function startAndToken(harness: Harness): Promise<{ tokenAt: number; close: () => Promise<void> }> {
  const tether = await harness.startTether();
  const token = await tether.token({ client: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read' });
  if (!token.accessToken) throw new Error('no access token');
  return { tokenAt: performance.now(), close: () => tether.close() };
}

async function run(): Promise<StartTetherTimes> {
  const importStarted = performance.now();
  const harness: Harness = await import('../../src/testing/index.js');
  const importHarness = performance.now() - importStarted;

  const close: number[] = [];
  const timedClose = async (started: { close: () => Promise<void> }) => {
    const closing = performance.now();
    await started.close();
    close.push(performance.now() - closing);
  };
  const firstStarted = performance.now();
  const first = await startAndToken(harness);
  await timedClose(first);

  const furtherStartToToken: number[] = [];
  for (let i = 0; i < further; i++) {
    const started = performance.now();
    const next = await startAndToken(harness);
    furtherStartToToken.push(next.tokenAt - started);
    await timedClose(next);
  }
  return { processStartToFirstToken: first.tokenAt, importHarness, firstStartToToken: first.tokenAt - firstStarted, furtherStartToToken, close };
}

run().then(
  (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
  (error: Error) => process.send!({ type: 'error', error: error.stack ?? String(error) }, () => process.exit(1)),
);

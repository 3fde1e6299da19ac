import path from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { FORM_HEADERS, requestOnce } from '../lib/https_client.js';
import { forkTs, nextMessage, REPO_ROOT, stopChild } from '../lib/processes.js';
import type { PairRow } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { startTetherDev } from '../load/servers.js';
import { clientCredentialsBody, ORDERS } from '../load/subjects.js';
import type { VerifierBenchInput, VerifierBenchResult } from './verify_child.js';

function pairOf(pair: string, subject: string, baseline: string, subjectRates: number[], baselineRates: number[], note: string): PairRow {
  const ratios = subjectRates.map((value, i) => value / baselineRates[i]!);
  return {
    pair, subject, baseline, note, clean: true,
    subjectRps: median(subjectRates), baselineRps: median(baselineRates),
    ratio: median(ratios), perRoundRatios: ratios,
  };
}

/**
 * What verify() would do per second in each round with its signature step swapped for the
 * synchronous node:crypto one: its time per verification, less WebCrypto's, plus node:crypto's.
 */
function projectedRates(result: VerifierBenchResult): number[] {
  const { tether, webCrypto, nodeCryptoSync } = result.sequential;
  return tether.map((rate, i) => 1 / (1 / rate - 1 / webCrypto[i]! + 1 / nodeCryptoSync[i]!));
}

/** Pair 4: the resource-server verifier in its own child (pinned to the server CPU), on a real Tether token. */
export async function verifierSection(context: BenchContext): Promise<{ result: VerifierBenchResult; rows: PairRow[] }> {
  // A real Tether token: from a PGlite `tether dev`, bound to the orders-worker certificate.
  const server = await startTetherDev(context, 'tether-verifier-issuer');
  let input: VerifierBenchInput;
  try {
    const files = server.pki.client('orders-worker');
    const response = await requestOnce(server.endpoint, {
      method: 'POST', path: '/token', headers: FORM_HEADERS, body: clientCredentialsBody(), clientCertFile: files.certFile, clientKeyFile: files.keyFile,
    });
    if (response.status !== 200) throw new Error(`verifier token: ${response.status} ${response.text}`);
    const jwks = (await requestOnce(server.endpoint, { path: '/jwks' })).json() as { keys: never[] };
    input = {
      token: response.json().access_token as string,
      jwks,
      thumbprint: files.thumbprint,
      issuer: `https://${server.host}`,
      audience: ORDERS,
      // Interleaved rounds: at least five, so that a ratio is a median of five side-by-side measurements.
      rounds: context.options.quick ? 1 : Math.max(5, context.options.rounds),
      seconds: context.options.verifierSeconds,
    };
  } finally {
    await stopChild(server.child);
  }
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'verifier', 'verify_child.ts'), [], { logFile: path.join(context.logDir, 'verifier.log') });
  context.pinning.pin(child.pid, 'server');
  const done = nextMessage<{ type: 'result'; result: VerifierBenchResult }>(child, 'result', 600_000);
  child.send(input);
  const { result } = await done;
  await stopChild(child, 2000);
  const rows: PairRow[] = [
    pairOf('4 verifier', 'tether verify()', 'jose.jwtVerify', result.sequential.tether, result.sequential.jose, 'one at a time, mTLS-bound token, binding checked'),
    pairOf('4 verifier (10 in flight)', 'tether verify()', 'jose.jwtVerify', result.concurrent10.tether, result.concurrent10.jose, '10 verifications in flight'),
    pairOf('4 ceiling', 'tether verify()', 'node:crypto verify (sync)', result.sequential.tether, result.sequential.nodeCryptoSync, 'signature check alone, no claims: the ceiling'),
    pairOf('4 signature step', 'node:crypto verify (sync, cached KeyObject)', 'WebCrypto verify (what jose calls)', result.sequential.nodeCryptoSync, result.sequential.webCrypto, 'the one step the verifier could hand-write'),
    pairOf('4 signature step (10 in flight)', 'node:crypto verify (sync, cached KeyObject)', 'WebCrypto verify (what jose calls)', result.concurrent10.nodeCryptoSync, result.concurrent10.webCrypto, 'WebCrypto uses the thread pool; a sync verify holds the event loop'),
    pairOf('4 hand-written gain', 'verify() with a sync signature step (projected)', 'tether verify() (on jose)', projectedRates(result), result.sequential.tether, 'per round: 1 / (t_verify - t_webcrypto + t_sync); keep jose unless clearly above 1'),
  ];
  return { result, rows };
}

import path from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { FORM_HEADERS, requestOnce } from '../lib/https_client.js';
import { forkTs, nextMessage, REPO_ROOT, stopChild } from '../lib/processes.js';
import type { PairRow } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { startTetherDev } from '../load/servers.js';
import { clientCredentialsBody, ORDERS } from '../load/subjects.js';
import type { AllCoresResult, VerifierBenchInput, VerifierBenchResult } from './verify_child.js';

function pairOf(pair: string, subject: string, baseline: string, subjectRates: number[], baselineRates: number[], note: string): PairRow {
  const ratios = subjectRates.map((value, i) => value / baselineRates[i]!);
  return {
    pair, subject, baseline, note, clean: true,
    subjectRps: median(subjectRates), baselineRps: median(baselineRates),
    ratio: median(ratios), perRoundRatios: ratios,
  };
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
  const result = await runChild<VerifierBenchResult>(context, input, true);
  // The same token, unpinned: what one process does with every core the machine gives it.
  const allCores = await runChild<AllCoresResult>(context, { ...input, allCores: true }, false);
  const cpu = (micros: number[]) => Math.round(median(micros));
  const rows: PairRow[] = [
    pairOf('4 verifier', 'tether verify()', 'jose.jwtVerify', result.sequential.tether, result.sequential.jose, 'one at a time, mTLS-bound token, binding checked, every signature checked'),
    pairOf('4 verifier (10 in flight)', 'tether verify()', 'jose.jwtVerify', result.concurrent10.tether, result.concurrent10.jose, '10 verifications in flight'),
    pairOf('4 ceiling', 'tether verify()', 'node:crypto verify (sync)', result.sequential.tether, result.sequential.nodeCryptoSync, 'the signature check alone (KeyObject, DER signature), no claims: the ceiling'),
    pairOf('4 ceiling (10 in flight)', 'tether verify()', 'node:crypto verify (sync)', result.concurrent10.tether, result.concurrent10.nodeCryptoSync, 'the same, 10 in flight'),
    pairOf('4 signature step', 'node:crypto verify (sync, KeyObject alone, DER)', 'WebCrypto verify (what jose calls)', result.sequential.nodeCryptoSync, result.sequential.webCrypto, 'the one step the verifier hand-writes'),
    pairOf('4 signature step (10 in flight)', 'node:crypto verify (sync, KeyObject alone, DER)', 'WebCrypto verify (what jose calls)', result.concurrent10.nodeCryptoSync, result.concurrent10.webCrypto, 'WebCrypto uses the thread pool; a sync verify holds the event loop'),
    // Not pinned: WebCrypto's thread pool may use the other cores; the labels carry the CPU each verification took.
    pairOf('4 verifier, all cores (10 in flight)', `tether verify() (${cpu(allCores.cpuMicros.tether)} µs CPU each)`, `jose.jwtVerify (${cpu(allCores.cpuMicros.jose)} µs CPU each)`,
      allCores.rates.tether, allCores.rates.jose, 'not pinned, 10 in flight: what one process does with every core'),
    // The default verifier remembers the tokens whose signature verified: the same token again skips the curve arithmetic.
    pairOf('4 token seen before', 'tether verify() (signature remembered)', 'node:crypto verify (sync)', result.sequential.tetherSeen, result.sequential.nodeCryptoSync, 'the default verifier, the same token again: claims, expiry and binding checked, the signature remembered'),
    pairOf('4 token seen before', 'tether verify() (signature remembered)', 'tether verify() (every signature checked)', result.sequential.tetherSeen, result.sequential.tether, 'what remembering saves'),
    pairOf('4 node:crypto call form', 'node:crypto verify (sync, KeyObject alone, DER)', "node:crypto verify (sync, { key, dsaEncoding: 'ieee-p1363' })", result.sequential.nodeCryptoSync, result.sequential.nodeCryptoP1363, 'the same check, two ways of calling it'),
  ];
  return { result: { ...result, allCores }, rows };
}

/** One verifier child: pinned to the server CPU, or left on every core. */
async function runChild<Result>(context: BenchContext, input: VerifierBenchInput, pinned: boolean): Promise<Result> {
  const child = forkTs(path.join(REPO_ROOT, 'bench', 'verifier', 'verify_child.ts'), [], { logFile: path.join(context.logDir, pinned ? 'verifier.log' : 'verifier-all-cores.log') });
  if (pinned) context.pinning.pin(child.pid, 'server');
  const done = nextMessage<{ type: 'result'; result: Result }>(child, 'result', 600_000);
  child.send(input);
  const { result } = await done;
  await stopChild(child, 2000);
  return result;
}

/**
 * The load generator, in its own process so that it never shares an event loop with a server under
 * test: receives one {@link LoadSpec} over IPC, runs autocannon (programmatic API) for a fixed time
 * with a fixed number of keep-alive connections, and answers with a {@link LoadResult}. Everything a
 * run needs (DPoP proofs included) is made before the parent starts the clock.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import autocannon from 'autocannon';
import { createDpopSigner } from '../lib/dpop_proofs.js';
import type { LoadResult, LoadSpec } from '../lib/load_spec.js';

/** The DPoP proof pool of one run: every proof is signed before the clock starts. */
interface ProofPool {
  take(): string | undefined;
  size: number;
}

/**
 * Enough proofs for the run at three times the rate its warm-up reached (the rate moves by up to 2×
 * on a shared machine), at least 20,000. The run never signs: if the pool still runs out, the run
 * stops there and reports its shorter duration and `proofPoolExhausted`.
 */
function dpopPool(spec: LoadSpec): ProofPool {
  const signer = createDpopSigner();
  const size = Math.max(20_000, Math.ceil((spec.expectedRate ?? 6000) * 3 * spec.durationSeconds));
  const proofs = Array.from({ length: size }, () => signer.proof('POST', spec.dpopHtu!));
  let next = 0;
  return {
    size,
    take() {
      const proof = proofs[next];
      if (proof !== undefined) proofs[next++] = '';
      return proof || undefined;
    },
  };
}

/** A run prepared (proof pool signed, TLS material read): `start()` runs it and measures. */
interface PreparedRun {
  start(): Promise<LoadResult>;
}

function prepareRun(spec: LoadSpec): PreparedRun {
  if (spec.newConnectionPerRequest) return { start: () => runNewConnectionPerRequest(spec) };
  const headers: Record<string, string> = { host: spec.host, ...spec.headers };
  const pool = spec.dpopHtu ? dpopPool(spec) : undefined;
  const url = new URL(spec.url);
  const tlsOptions = url.protocol === 'https:' && spec.clientCertFile
    ? { cert: readFileSync(spec.clientCertFile), key: readFileSync(spec.clientKeyFile!) }
    : undefined;
  return {
    start: () => new Promise((resolve, reject) => {
      let exhausted = false;
      const cpuBefore = process.cpuUsage();
      const instance = autocannon({
        url: spec.url,
        method: spec.method,
        headers,
        body: spec.body,
        connections: spec.connections,
        pipelining: 1,
        duration: spec.durationSeconds,
        servername: spec.host.split(':')[0],
        tlsOptions,
        requests: pool ? [{
          setupRequest: (request) => {
            const proof = pool.take();
            if (proof === undefined) {
              // Out of proofs: stop rather than sign while measuring (the run's figures stay valid for its shorter duration).
              if (!exhausted) instance.stop();
              exhausted = true;
              return { ...request, headers: { ...request.headers, dpop: 'pool-exhausted' } };
            }
            return { ...request, headers: { ...request.headers, dpop: proof } };
          },
        }] : undefined,
      }, (error, result) => {
        if (error || !result) {
          reject(error ?? new Error('autocannon gave no result'));
          return;
        }
        const cpu = process.cpuUsage(cpuBefore);
        const ok = result['2xx'];
        resolve({
          loadCpuMicros: cpu.user + cpu.system,
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          durationSeconds: result.duration,
          rps: ok / result.duration,
          p50: result.latency.p50,
          p99: result.latency.p99,
          mean: result.latency.average,
          ...(pool ? { proofPool: pool.size, proofPoolExhausted: exhausted } : {}),
        });
      });
    }),
  };
}

/**
 * A full TLS handshake (with the client certificate) for every request. autocannon's `reconnectRate`
 * does not count the response that triggers the reconnect, so this mode is a plain loop over
 * `https.request` without an agent: no keep-alive and no TLS session resumption.
 */
async function runNewConnectionPerRequest(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const tls = { cert: spec.clientCertFile ? readFileSync(spec.clientCertFile) : undefined, key: spec.clientKeyFile ? readFileSync(spec.clientKeyFile) : undefined };
  const body = Buffer.from(spec.body ?? '');
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const once = () => new Promise<void>((resolve) => {
    const started = performance.now();
    const request = https.request({
      method: spec.method,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname,
      servername: spec.host.split(':')[0],
      rejectUnauthorized: false,
      agent: false,
      headers: { host: spec.host, ...spec.headers, 'content-length': String(body.length) },
      ...tls,
    }, (response) => {
      response.resume();
      response.on('end', () => {
        if (response.statusCode! >= 200 && response.statusCode! < 300) latencies.push(performance.now() - started);
        else non2xx++;
        resolve();
      });
    });
    request.on('error', () => {
      errors++;
      resolve();
    });
    request.end(body);
  });
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + spec.durationSeconds * 1000;
  await Promise.all(Array.from({ length: spec.connections }, async () => {
    while (performance.now() < deadline) await once();
  }));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0);
  return {
    loadCpuMicros: cpu.user + cpu.system,
    ok: latencies.length,
    non2xx,
    errors,
    timeouts: 0,
    durationSeconds: elapsed,
    rps: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    mean: latencies.reduce((sum, value) => sum + value, 0) / Math.max(1, latencies.length),
  };
}

/**
 * IPC: { type: 'prepare', spec } → { type: 'armed' } (pool signed; the parent now reads every party's
 * CPU time) → { type: 'go' } → { type: 'result', result }. The process then waits to be stopped, so
 * that the parent can still read its CPU time from /proc.
 */
function fail(error: Error): void {
  process.send!({ type: 'error', error: error.stack ?? String(error) });
}

process.on('message', (message: { type: string; spec?: LoadSpec }) => {
  if (message.type !== 'prepare') return;
  let prepared: PreparedRun;
  try {
    prepared = prepareRun(message.spec!);
  } catch (error) {
    fail(error as Error);
    return;
  }
  process.on('message', (next: { type: string }) => {
    if (next.type !== 'go') return;
    prepared.start().then((result) => process.send!({ type: 'result', result }), fail);
  });
  process.send!({ type: 'armed' });
});

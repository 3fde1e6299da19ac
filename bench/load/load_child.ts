/**
 * The load generator, in its own process so that it never shares an event loop with a server under
 * test: receives one {@link LoadSpec} over IPC, runs autocannon (programmatic API) for a fixed time
 * with a fixed number of keep-alive connections, and answers with a {@link LoadResult}.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import autocannon from 'autocannon';
import { createDpopSigner } from '../lib/dpop_proofs.js';
import type { LoadResult, LoadSpec } from '../lib/load_spec.js';

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  if (spec.newConnectionPerRequest) return runNewConnectionPerRequest(spec);
  const headers: Record<string, string> = { host: spec.host, ...spec.headers };
  let setupRequest: ((request: { headers: Record<string, string> }) => unknown) | undefined;
  let proofsSignedDuringRun = 0;
  if (spec.dpopHtu) {
    const signer = createDpopSigner();
    const htu = spec.dpopHtu;
    // Enough proofs for the run at 1.5× the expected rate; signing more during the run is counted.
    const poolSize = Math.ceil((spec.expectedRate ?? 4000) * 1.5 * spec.durationSeconds) + 1000;
    const pool = Array.from({ length: poolSize }, () => signer.proof('POST', htu));
    let next = 0;
    setupRequest = (request) => {
      let proof = pool[next];
      if (proof === undefined) {
        proof = signer.proof('POST', htu);
        proofsSignedDuringRun++;
      } else {
        pool[next] = undefined as unknown as string;
      }
      next++;
      request.headers = { ...request.headers, dpop: proof };
      return request;
    };
  }

  const url = new URL(spec.url);
  const cpuBefore = process.cpuUsage();
  const result = await autocannon({
    url: spec.url,
    method: spec.method,
    headers,
    body: spec.body,
    connections: spec.connections,
    pipelining: 1,
    duration: spec.durationSeconds,
    servername: spec.host.split(':')[0],
    tlsOptions: url.protocol === 'https:' && spec.clientCertFile
      ? { cert: readFileSync(spec.clientCertFile), key: readFileSync(spec.clientKeyFile!) }
      : undefined,
    requests: setupRequest ? [{ setupRequest }] : undefined,
  });

  const cpu = process.cpuUsage(cpuBefore);
  const ok = result['2xx'];
  return {
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
    ...(spec.dpopHtu ? { proofsSignedDuringRun } : {}),
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

process.once('message', (message) => {
  runLoad((message as { spec: LoadSpec }).spec).then(
    (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
    (error: Error) => process.send!({ type: 'error', error: error.stack ?? String(error) }, () => process.exit(1)),
  );
});

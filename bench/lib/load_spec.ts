/** What the load generator child (bench/load/load_child.ts) is asked to do for one run. */
export interface LoadSpec {
  /** e.g. https://127.0.0.1:40123/token (the connection goes to this address). */
  url: string;
  /** Host header and TLS server name, e.g. localhost:40123 (what the issuer and DPoP `htu` name). */
  host: string;
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  body?: string;
  /** PEM files of the client certificate and key to present (mTLS). */
  clientCertFile?: string;
  clientKeyFile?: string;
  connections: number;
  durationSeconds: number;
  /** A new TLS connection (full handshake) for every request instead of keep-alive. */
  newConnectionPerRequest?: boolean;
  /** Attach a fresh DPoP proof for this `htu` to every request (RFC 9449). */
  dpopHtu?: string;
  /** Expected requests per second, to size the pre-generated DPoP proof pool. */
  expectedRate?: number;
}

/** One run's figures, as the load child reports them. */
export interface LoadResult {
  /** Responses with status 2xx. */
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationSeconds: number;
  /** 2xx responses per second over the whole run. */
  rps: number;
  /** Latency percentiles, milliseconds. */
  p50: number;
  p99: number;
  mean: number;
  /** DPoP proofs signed before the run (the pool); none is signed during it. */
  proofPool?: number;
  /** The pool ran out and the run stopped early (its duration says when). */
  proofPoolExhausted?: boolean;
  /** CPU time (user + system) of the load generator process during the run, µs (its own process.cpuUsage). */
  loadCpuMicros?: number;
  /** Added by the runner: CPU per 2xx response, µs, of each party, and the machine's utilisation. */
  cpuPerRequest?: { server?: number; database?: number; loadGenerator?: number };
  /** PostgreSQL backends whose CPU was counted. */
  databaseBackends?: number;
  /** Share of all CPUs of the machine busy during the run (every process, not only ours). */
  machineBusy?: number;
}

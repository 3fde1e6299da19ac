import type { Knex } from 'knex';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LoadedSigningKeys } from '../keys/signing_keys.js';

/**
 * Tether's Prometheus metrics (docs/operations.md#metrics), one registry per app: several Tethers
 * in one process (tests, the harness) each count their own requests, and nothing is global.
 *
 * Counters and histograms are fed by the request path (token_metrics.ts, issuance_timing.ts);
 * gauges are read when scraped, from the parts that own the numbers (the knex pool, the issuance
 * batcher, the signing keys), so an idle instance costs nothing between scrapes.
 */

/** Where the gauges read their values, when scraped. */
export interface MetricSources {
  knex: Knex;
  /** Issuances waiting to be written and statements running (ledger/issuance_batcher.ts). */
  issuanceQueue(): { waiting: number; inFlight: number };
  signingKeys(): LoadedSigningKeys;
}

export interface TetherMetrics {
  registry: Registry;
  tokensIssued: Counter<'grant' | 'client' | 'resource'>;
  tokensRefused: Counter<'grant' | 'client' | 'resource' | 'error'>;
  /** Time in each step of an issuance: policy (up to minting), signing, ledger commit. */
  issuancePhase: Histogram<'grant' | 'phase'>;
  dpopReplays: Counter;
  requestDuration: Histogram<'route' | 'status'>;
  /** Use reports received (use_reports/use_report_endpoint.ts), by result. */
  useReports: Counter<'result'>;
  /** Presentations in accepted use reports, by outcome. */
  useEvents: Counter<'outcome'>;
}

/** What the use-report endpoint counts. */
export type UseReportMetrics = Pick<TetherMetrics, 'useReports' | 'useEvents'>;

/** Seconds; from a fraction of a millisecond (a policy decision) to the database's timeouts. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createTetherMetrics(sources: MetricSources): TetherMetrics {
  const registry = new Registry();
  // Process metrics: CPU, memory, heap, event-loop lag, GC, open file descriptors (prom-client's set).
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const metrics: TetherMetrics = {
    registry,
    tokensIssued: new Counter({
      name: 'tether_tokens_issued_total',
      help: 'Access tokens issued (their issuance event committed), by grant, client and resource.',
      labelNames: ['grant', 'client', 'resource'],
      registers,
    }),
    tokensRefused: new Counter({
      name: 'tether_token_requests_refused_total',
      help: 'Token requests refused, by grant, client (unknown for an unregistered one), requested resource and OAuth error code.',
      labelNames: ['grant', 'client', 'resource', 'error'],
      registers,
    }),
    issuancePhase: new Histogram({
      name: 'tether_issuance_phase_duration_seconds',
      help: 'Time a token request spent in each issuance phase: policy (client state, resource and scope policy, binding, DPoP replay check), signing, ledger (commit of the issuance event).',
      labelNames: ['grant', 'phase'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    dpopReplays: new Counter({
      name: 'tether_dpop_replays_total',
      help: 'Token requests refused because their DPoP proof had been used before (RFC 9449 §11.1).',
      registers,
    }),
    requestDuration: new Histogram({
      name: 'tether_http_request_duration_seconds',
      help: 'HTTP requests answered, by route and status code.',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    useReports: new Counter({
      name: 'tether_use_reports_total',
      help: 'Use reports received, by result: accepted, duplicate (a report id taken before: nothing written), unauthenticated, forbidden (a resource the reporter does not serve), invalid, unavailable (database).',
      labelNames: ['result'],
      registers,
    }),
    useEvents: new Counter({
      name: 'tether_use_events_total',
      help: 'Presentations reported by APIs in accepted use reports, by outcome (accepted, refused).',
      labelNames: ['outcome'],
      registers,
    }),
  };

  registerScrapedGauges(registers, sources);
  return metrics;
}

/** The pool of a knex instance (tarn.js); absent before the first query and after destroy. */
interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  numPendingCreates(): number;
}

function registerScrapedGauges(registers: Registry[], sources: MetricSources): void {
  new Gauge({
    name: 'tether_database_pool_connections',
    help: 'Database pool connections: used, free, pending_acquire (queries waiting for a connection), pending_create (connections being opened).',
    labelNames: ['state'],
    registers,
    collect() {
      const pool = (sources.knex.client as { pool?: TarnPool }).pool;
      this.set({ state: 'used' }, pool?.numUsed() ?? 0);
      this.set({ state: 'free' }, pool?.numFree() ?? 0);
      this.set({ state: 'pending_acquire' }, pool?.numPendingAcquires() ?? 0);
      this.set({ state: 'pending_create' }, pool?.numPendingCreates() ?? 0);
    },
  });
  new Gauge({
    name: 'tether_issuance_queue_depth',
    help: 'Issuances waiting for an issuance statement (database.queueLimit bounds it; beyond, 503).',
    registers,
    collect() {
      this.set(sources.issuanceQueue().waiting);
    },
  });
  new Gauge({
    name: 'tether_issuance_statements_in_flight',
    help: 'Issuance statements running in the database now.',
    registers,
    collect() {
      this.set(sources.issuanceQueue().inFlight);
    },
  });
  new Gauge({
    name: 'tether_signing_key_age_seconds',
    help: 'Seconds since the key that signs new tokens was activated, per algorithm and kid (alert when it outlives the rotation policy).',
    labelNames: ['alg', 'kid'],
    registers,
    collect() {
      // Only the active keys: a rotated key's series disappears instead of ageing forever.
      this.reset();
      const now = Date.now();
      for (const key of sources.signingKeys().ring.keys) {
        if (key.state === 'active') this.set({ alg: key.alg, kid: key.kid }, Math.max(0, (now - key.activatedAt.getTime()) / 1000));
      }
    },
  });
}

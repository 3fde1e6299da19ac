/**
 * `createUseReporter`: sends what a verifier saw to Tether's use-report endpoint
 * (docs/use-reports.md), in batches, off the request path.
 *
 * - Recording is synchronous, never throws and never waits: the request is answered whatever
 *   happens to its report.
 * - Identical events (same outcome, reason, code, token, client, claimed audience, scopes, binding)
 *   are folded into one with a `count`; a flood of one refusal costs one entry.
 * - Memory is bounded: at most `maxQueuedEvents` distinct entries wait (those being sent included).
 *   An event that finds no room is dropped and counted; so is a batch Tether refuses as invalid (400)
 *   or refuses to take from this client for this resource (403: the client does not serve it, which
 *   only a configuration change fixes; sending it again would be refused again).
 * - When Tether cannot be reached or answers an error, the same report (the same entries and the same
 *   `report_id`) is sent again after a backoff (doubling from `retryDelayMs` to `maxRetryDelayMs`)
 *   before anything else. Tether takes a report id once, so a report it committed but whose answer
 *   was lost (a timeout) is not counted twice when it comes again.
 *
 * The reporter authenticates as the API's own client: `authorize` returns the headers of one report
 * request (`Authorization`, and `DPoP` for a DPoP-bound token, made for that request's method and
 * URL). The package makes no tokens itself; tether-oauth-client does.
 *
 * @module
 */
import type { FetchLike } from './fetch_json.js';
import { createIssuerMetadataSource, isHttpUrl } from './issuer_metadata.js';
import type { UseEvent, UseRecorder } from './use_event.js';

/** The request `authorize` makes headers for. */
export interface UseReportRequest {
  readonly method: 'POST';
  /** The use-report endpoint (DPoP `htu`). */
  readonly url: string;
}

/** Options of {@link createUseReporter}. */
export interface UseReporterOptions {
  /** Tether's use-report endpoint; when absent, `tether_use_report_endpoint` of `issuer`'s metadata. */
  readonly endpoint?: string;
  /** Tether's issuer, for discovering the endpoint. */
  readonly issuer?: string;
  /** The reporting API's resource URI (the audience of the tokens it verifies). */
  readonly resource: string;
  /** The headers of one report request: the API's own bound token for the use-report resource. */
  readonly authorize: (request: UseReportRequest) => Promise<Readonly<Record<string, string>>> | Readonly<Record<string, string>>;
  /** The `fetch` reports go through (e.g. undici's with a dispatcher presenting the API's certificate). */
  readonly fetch?: FetchLike;
  /** Most entries in one report (default 500; Tether accepts up to 1000). */
  readonly batchSize?: number;
  /** How often queued events are sent (default 5 000 ms). */
  readonly flushIntervalMs?: number;
  /** Most distinct entries kept waiting, in flight included (default 10 000). */
  readonly maxQueuedEvents?: number;
  /** Timeout of one report request, `authorize` included (default 5 000 ms). */
  readonly timeoutMs?: number;
  /** First wait after a failed report (default 1 000 ms), doubled per failure up to `maxRetryDelayMs` (default 60 000). */
  readonly retryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
  /**
   * Report requests without credentials (`no_credentials`, e.g. a health checker or a scanner).
   * Default true: they fold into one counted entry per batch, never one row per request.
   */
  readonly reportAnonymous?: boolean;
  /** Told about each failed report (for logs); must not throw. */
  readonly onError?: (error: Error) => void;
  /** Clock in epoch milliseconds (for tests). */
  readonly now?: () => number;
}

/** Counters since the reporter was created; `queued` and `inFlight` are current. */
export interface UseReporterStats {
  /** Presentations waiting (folded ones counted each). */
  readonly queued: number;
  /** Distinct entries waiting (what the bound limits). */
  readonly queuedEntries: number;
  /** Presentations in the report being sent now. */
  readonly inFlight: number;
  /** Presentations Tether accepted. */
  readonly sent: number;
  /** Presentations dropped: no room in the queue, refused by Tether as invalid, or left at close. */
  readonly dropped: number;
  /** Report requests that failed (network, timeout, or an error answer). */
  readonly failedBatches: number;
}

/** A running reporter; give it to `createVerifier({ useReporter })`. */
export interface UseReporter extends UseRecorder {
  /** Sends what is queued now (ignoring the backoff); resolves when that attempt has ended, never rejects. */
  flush(): Promise<void>;
  /** Stops the timer, makes a last attempt, drops (and counts) what is left; later events are dropped. */
  close(): Promise<void>;
  stats(): UseReporterStats;
}

interface Entry {
  readonly event: UseEvent;
  count: number;
  /** The latest occurrence (the token's last use). */
  lastAt: number;
}

/** One report: its id (kept for every resend) and its entries. */
interface Batch {
  readonly id: string;
  readonly entries: readonly Entry[];
}

const DEFAULTS = { batchSize: 500, flushIntervalMs: 5000, maxQueuedEvents: 10_000, timeoutMs: 5000, retryDelayMs: 1000, maxRetryDelayMs: 60_000 };

/** Tether's limit on one report (src/use_reports/report_validation.ts). */
export const MAX_EVENTS_PER_REPORT = 1000;

const foldKey = (event: UseEvent) => JSON.stringify([
  event.outcome, event.reason, event.code, event.tokenId, event.clientId, event.tokenAudience, event.scopesRequired, event.binding,
]);

/** The wire form of one entry (docs/use-reports.md#the-report). */
function wireEvent(entry: Entry): Record<string, unknown> {
  const { event } = entry;
  return {
    at: new Date(entry.lastAt).toISOString(),
    outcome: event.outcome,
    ...(event.reason === undefined ? {} : { reason: event.reason }),
    ...(event.code === undefined ? {} : { code: event.code }),
    ...(event.tokenId === undefined ? {} : { token_id: event.tokenId }),
    ...(event.clientId === undefined ? {} : { client_id: event.clientId }),
    ...(event.tokenAudience === undefined ? {} : { token_audience: event.tokenAudience }),
    scopes: event.scopesRequired.join(' '),
    ...(event.binding === undefined ? {} : { binding: event.binding }),
    count: entry.count,
  };
}

/** A report Tether refused as malformed: sending it again cannot help. */
class RefusedReport extends Error {}

/** Creates a reporter; throws `TypeError` naming a bad option. */
export function createUseReporter(options: UseReporterOptions): UseReporter {
  const settings = validateReporterOptions(options);
  const now = options.now ?? Date.now;
  const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const endpoint = endpointSource(options, fetchImpl, settings.timeoutMs, now);

  const queue = new Map<string, Entry>();
  let inFlight: readonly Entry[] = [];
  /** A report that failed, to be sent again as it was before anything new. */
  let retry: Batch | undefined;
  const counters = { sent: 0, dropped: 0, failedBatches: 0 };
  let failures = 0;
  let nextAttemptAt = 0;
  let draining: Promise<void> | undefined;
  let closed = false;

  const room = () => settings.maxQueuedEvents - queue.size - inFlight.length - (retry?.entries.length ?? 0);
  const pending = () => queue.size > 0 || retry !== undefined;

  /** Adds an entry (or folds it into an identical one); drops it, counted, when there is no room. */
  function enqueue(key: string, event: UseEvent, count: number, at: number): void {
    const existing = queue.get(key);
    if (existing) {
      existing.count += count;
      existing.lastAt = Math.max(existing.lastAt, at);
      return;
    }
    if (room() <= 0) {
      counters.dropped += count;
      return;
    }
    queue.set(key, { event, count, lastAt: at });
  }

  function record(event: UseEvent): void {
    try {
      if (closed) {
        counters.dropped += 1;
        return;
      }
      if (event.reason === 'no_credentials' && !settings.reportAnonymous) return;
      enqueue(foldKey(event), event, 1, event.occurredAt);
      if (queue.size >= settings.batchSize && now() >= nextAttemptAt) void drain();
    } catch {
      // Recording is never the request's problem.
    }
  }

  /** Takes the oldest `batchSize` entries out of the queue. */
  function takeBatch(): Entry[] {
    const batch: Entry[] = [];
    for (const [key, entry] of queue) {
      if (batch.length === settings.batchSize) break;
      queue.delete(key);
      batch.push(entry);
    }
    return batch;
  }

  async function send(batch: Batch): Promise<void> {
    const url = await endpoint();
    const signal = AbortSignal.timeout(settings.timeoutMs);
    const headers = await Promise.race([
      Promise.resolve(options.authorize({ method: 'POST', url })),
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('authorize timed out')), { once: true })),
    ]);
    const response = await fetchImpl(url, {
      method: 'POST',
      redirect: 'manual',
      signal,
      headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ resource: options.resource, report_id: batch.id, events: batch.entries.map(wireEvent) }),
    });
    await response.body?.cancel().catch(() => undefined);
    if (response.status === 400) throw new RefusedReport('Tether refused the report as invalid (400)');
    if (response.status === 403) throw new RefusedReport('Tether refused reports for this resource from this client (403): is it in the resource\'s servedBy or introspectors?');
    if (response.status < 200 || response.status > 299) throw new Error(`the use-report endpoint answered HTTP ${response.status}`);
  }

  /** Sends the report to retry, then batch after batch, until the queue is empty or a report fails. */
  async function drainQueue(): Promise<void> {
    while (pending()) {
      const batch: Batch = retry ?? { id: crypto.randomUUID(), entries: takeBatch() };
      retry = undefined;
      inFlight = batch.entries;
      const events = batch.entries.reduce((sum, entry) => sum + entry.count, 0);
      try {
        await send(batch);
        counters.sent += events;
        failures = 0;
        nextAttemptAt = 0;
      } catch (error) {
        counters.failedBatches += 1;
        try {
          options.onError?.(error instanceof Error ? error : new Error(String(error)));
        } catch {
          // A logging hook that throws must not lose the batch.
        }
        if (error instanceof RefusedReport) {
          counters.dropped += events;
          continue;
        }
        failures += 1;
        nextAttemptAt = now() + Math.min(settings.maxRetryDelayMs, settings.retryDelayMs * 2 ** (failures - 1));
        // Kept whole, with its id: Tether may have committed it and only the answer was lost.
        retry = batch;
        return;
      } finally {
        inFlight = [];
      }
    }
  }

  /** One drain at a time; callers during one wait for it. */
  function drain(): Promise<void> {
    draining ??= drainQueue().catch(() => undefined).finally(() => {
      draining = undefined;
    });
    return draining;
  }

  const timer = setInterval(() => {
    if (pending() && now() >= nextAttemptAt) void drain();
  }, settings.flushIntervalMs);
  timer.unref?.();

  return {
    record,
    async flush() {
      // What was queued before this call: behind a drain that is running, then sent by one of our own.
      while (draining) await draining;
      if (pending()) await drain();
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      while (draining) await draining;
      if (pending()) await drain();
      for (const entry of [...queue.values(), ...(retry?.entries ?? [])]) counters.dropped += entry.count;
      queue.clear();
      retry = undefined;
    },
    stats() {
      const waiting = [...queue.values(), ...(retry?.entries ?? [])];
      return {
        queued: waiting.reduce((sum, entry) => sum + entry.count, 0),
        queuedEntries: waiting.length,
        inFlight: inFlight.reduce((sum, entry) => sum + entry.count, 0),
        ...counters,
      };
    },
  };
}

/** The endpoint as given, or discovered once from the issuer's metadata (RFC 8414). */
function endpointSource(options: UseReporterOptions, fetchImpl: FetchLike, timeoutMs: number, now: () => number): () => Promise<string> {
  if (options.endpoint !== undefined) {
    const { endpoint } = options;
    return async () => endpoint;
  }
  const metadata = createIssuerMetadataSource({ fetch: fetchImpl, timeoutMs, maxBytes: 512 * 1024, issuer: options.issuer!, retryAfterMs: 5000, now });
  return async () => {
    const discovered = (await metadata()).tether_use_report_endpoint;
    if (!isHttpUrl(discovered)) throw new Error(`the metadata of ${options.issuer!} has no tether_use_report_endpoint`);
    return discovered;
  };
}

function validateReporterOptions(options: UseReporterOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (options.endpoint === undefined && options.issuer === undefined) throw new TypeError('give endpoint, or issuer to discover it');
  if (options.endpoint !== undefined && !isHttpUrl(options.endpoint)) throw new TypeError('endpoint must be an absolute http(s) URL');
  if (options.issuer !== undefined && !isHttpUrl(options.issuer)) throw new TypeError('issuer must be an absolute http(s) URL');
  if (typeof options.resource !== 'string' || options.resource.length === 0) throw new TypeError('resource must be a non-empty string');
  if (typeof options.authorize !== 'function') throw new TypeError('authorize must be a function returning the request headers');
  const settings = { ...DEFAULTS, reportAnonymous: options.reportAnonymous !== false };
  for (const name of ['batchSize', 'flushIntervalMs', 'maxQueuedEvents', 'timeoutMs', 'retryDelayMs', 'maxRetryDelayMs'] as const) {
    const value = options[name];
    if (value === undefined) continue;
    if (!(typeof value === 'number' && Number.isInteger(value) && value > 0)) throw new TypeError(`${name} must be a positive integer`);
    settings[name] = value;
  }
  if (settings.batchSize > MAX_EVENTS_PER_REPORT) throw new TypeError(`batchSize must be at most ${MAX_EVENTS_PER_REPORT} (Tether's limit per report)`);
  return settings;
}

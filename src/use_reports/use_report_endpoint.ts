import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { RequestFacts } from '../ledger/events.js';
import type { RejectionAggregator } from '../ledger/rejection_aggregator.js';
import { appendUseEvents } from '../ledger/use_events.js';
import type { UseReportMetrics } from '../observability/metrics.js';
import type { ReporterAuthentication } from './reporter_authentication.js';
import { InvalidReport, MAX_REPORT_BYTES, parseUseReport } from './report_validation.js';

/** Seconds a report id is remembered beyond useReports.maxEventAge: the reporter's clock may run ahead (report_validation.ts MAX_CLOCK_AHEAD_MS) and a resend takes time. */
const REPORT_ID_MARGIN_SECONDS = 3600;

/**
 * The use-report endpoint (docs/use-reports.md), `POST useReports.path` on Tether's listeners.
 * Order: authenticate the reporter (nothing is read from an unauthenticated caller), read the body
 * within its bound, validate it whole, check that the reporter serves the resource it reports for,
 * then append every event in one statement (ledger/use_events.ts) and answer. Nothing is written
 * unless everything holds; a database that cannot take the statement is a 503 with Retry-After.
 */

export interface UseReportEndpointOptions {
  path: string;
  authenticate(ctx: Context): Promise<ReporterAuthentication>;
  /** The clients that serve `resource` (`servedBy` and `introspectors`) in the request's configuration; undefined for an unknown resource. */
  servingClientsOf(resource: string, ctx: Context): readonly string[] | undefined;
  knex: Knex;
  logger: Logger;
  maxEventAgeSeconds: number;
  requestFactsOf(ctx: Context): RequestFacts;
  unauthenticated: RejectionAggregator;
  metrics?: UseReportMetrics;
}

class TooLarge extends Error {}

export function useReportEndpoint(options: UseReportEndpointOptions) {
  return async function useReportEndpointMiddleware(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== options.path) return next();
    ctx.set('Cache-Control', 'no-store');
    if (ctx.method !== 'POST') {
      ctx.set('Allow', 'POST');
      answer(ctx, 405, { error: 'invalid_request', error_description: 'use POST' });
      return;
    }
    const count = (result: string) => options.metrics?.useReports.inc({ result });
    const facts = options.requestFactsOf(ctx);
    let authentication: ReporterAuthentication;
    try {
      authentication = await options.authenticate(ctx);
    } catch (error) {
      unavailable(ctx, options, error, facts);
      count('unavailable');
      return;
    }
    if (!authentication.ok) {
      await recordRefusal(options, authentication, facts);
      for (const [name, value] of Object.entries(authentication.headers)) ctx.set(name, value);
      answer(ctx, 401, authentication.body);
      count('unauthenticated');
      return;
    }

    let report;
    try {
      report = parseUseReport(await boundedBody(ctx), { now: Date.now(), maxEventAgeSeconds: options.maxEventAgeSeconds });
    } catch (error) {
      if (!(error instanceof InvalidReport || error instanceof TooLarge)) throw error;
      // The detail is for the operator: a reporter sends what its package wrote, so a bad report is a bug or an attack.
      options.logger.warn({ requestId: facts.requestId, reporter: authentication.clientId, detail: error.message }, 'use report refused as invalid');
      answer(ctx, 400, { error: 'invalid_request', error_description: 'the use report is invalid' });
      count('invalid');
      return;
    }

    const serving = options.servingClientsOf(report.resource, ctx);
    if (!serving?.includes(authentication.clientId)) {
      options.logger.warn({ requestId: facts.requestId, reporter: authentication.clientId, resource: report.resource }, 'use report for a resource the reporter does not serve');
      // The caller is authenticated; what it may not do is said plainly (RFC 6750 §3.1 has no code for it).
      answer(ctx, 403, { error: 'access_denied', error_description: 'this client does not serve the resource it reports for' });
      count('forbidden');
      return;
    }

    try {
      const origin = { reporterClientId: authentication.clientId, resource: report.resource, instanceId: facts.instanceId };
      // An id is remembered as long as its events could be taken again (plus the clocks' margin).
      const identity = report.reportId === undefined ? undefined : { reportId: report.reportId, rememberSeconds: options.maxEventAgeSeconds + REPORT_ID_MARGIN_SECONDS };
      const appended = await appendUseEvents(options.knex, origin, report.events, identity);
      if (appended.duplicate) {
        // Sent again after Tether had committed it (the answer was lost): recorded already, once.
        answer(ctx, 200, { events: 0, duplicate: true });
        count('duplicate');
        return;
      }
      answer(ctx, 200, { events: appended.events });
      count('accepted');
      for (const event of report.events) options.metrics?.useEvents.inc({ outcome: event.outcome }, event.count);
    } catch (error) {
      unavailable(ctx, options, error, facts);
      count('unavailable');
    }
  };
}

function answer(ctx: Context, status: number, body: Record<string, unknown>): void {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = body;
}

/** RFC 9110 §10.2.3: the report may be sent again; nothing of it was written. */
function unavailable(ctx: Context, options: UseReportEndpointOptions, error: unknown, facts: RequestFacts): void {
  options.logger.warn({ err: error, requestId: facts.requestId }, 'use report not written: the database is unavailable');
  ctx.set('Retry-After', '1');
  answer(ctx, 503, { error: 'temporarily_unavailable', error_description: 'use reports cannot be written right now; retry later' });
}

async function recordRefusal(options: UseReportEndpointOptions, refusal: Extract<ReporterAuthentication, { ok: false }>, facts: RequestFacts): Promise<void> {
  // Counted per kind and window like every unauthenticated refusal: a flood costs a few rows.
  await options.unauthenticated.record(
    { sourceAddress: facts.sourceAddress, route: 'use-reports', status: refusal.status, error: refusal.body.error, clientId: undefined, reason: refusal.reason },
    { type: 'request.rejected', details: { route: 'use-reports', status: refusal.status, error: refusal.body.error, reason: refusal.reason } },
    facts,
  ).catch((error: unknown) => options.logger.warn({ err: error }, 'use-report refusal not recorded'));
}

/** The body as text, refused past {@link MAX_REPORT_BYTES} without reading the rest; JSON only. */
async function boundedBody(ctx: Context): Promise<string> {
  if (!ctx.is('application/json')) throw new InvalidReport('the body is not application/json');
  const declared = ctx.request.length;
  if (declared !== undefined && declared > MAX_REPORT_BYTES) {
    ctx.set('Connection', 'close');
    throw new TooLarge(`the body declares ${declared} bytes, more than ${MAX_REPORT_BYTES}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REPORT_BYTES) {
      ctx.set('Connection', 'close');
      throw new TooLarge(`the body is larger than ${MAX_REPORT_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  try {
    return text.decode(Buffer.concat(chunks));
  } catch {
    throw new InvalidReport('the body is not UTF-8');
  }
}

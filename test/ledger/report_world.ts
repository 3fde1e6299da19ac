import type { Knex } from 'knex';
import { USE_REFUSAL_REASONS, type UseRefusalReason } from 'tether-oauth-resource-server';
import { appendUseEvents, type UseEventInput } from '../../src/ledger/use_events.js';

/**
 * The exposure report's world (test/ledger/exposure_report.test.ts, test/cli/report_command.test.ts):
 * a shop uses the orders API with one of its two scopes and never uses its payments grant, though the
 * payments API reports use; an auditor's API reports nothing; batch and edge-out are idle, resting
 * is idle and suspended, edge-in was issued a token just inside the window, and a former client
 * (removed from the configuration) still holds a live token. The orders API refused one presentation
 * for the first reason, two for the second, …; the payments API saw the shop's orders token (lateral
 * movement); a revoked token of the shop was presented at the orders API, refused and accepted.
 */

export const ORDERS = 'https://orders.report.test';
export const PAYMENTS = 'https://payments.report.test';
export const REPORTS = 'https://reports.report.test';
export const ELSEWHERE = 'https://elsewhere.example';

const mtls = (id: string, resources: Record<string, string[]>) => ({
  id, owner: `team-${id}`, purpose: `report tests: ${id}`, binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: `CN=${id}` }, resources,
});

export function reportConfig(): Record<string, unknown> {
  return {
    resources: [
      { uri: ORDERS, scopes: ['orders:read', 'orders:write'], servedBy: ['orders-api'] },
      { uri: PAYMENTS, scopes: ['payments:read', 'payments:charge'] },
      { uri: REPORTS, scopes: ['reports:read'] },
    ],
    clients: [
      mtls('shop', { [ORDERS]: ['orders:read', 'orders:write'], [PAYMENTS]: ['payments:read'] }),
      mtls('batch', { [ORDERS]: ['orders:read'] }),
      mtls('orders-api', {}),
      mtls('auditor', { [REPORTS]: ['reports:read'] }),
      mtls('resting', { [ORDERS]: ['orders:read'] }),
      mtls('edge-in', { [ORDERS]: ['orders:read'] }),
      mtls('edge-out', { [ORDERS]: ['orders:read'] }),
    ],
  };
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** 00:00 UTC of the first day of a window of `days` whole UTC days ending today. */
export function windowStart(days: number, now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (days - 1) * 24 * HOUR);
}

/** The times the world was seeded with, for exact expectations. */
export interface ReportTimes {
  /** Whole seconds. */
  now: Date;
  /** When the APIs saw the presentations. */
  seen: Date;
  from30: Date;
  shopOrders1Issued: Date;
  shopPaymentsIssued: Date;
  auditorIssued: Date;
  formerIssued: Date;
  edgeInIssued: Date;
}

/** A refusal count that tells the reasons apart: the n-th reason of the package's list, n + 1 presentations. */
export const refusalCount = (reason: UseRefusalReason) => USE_REFUSAL_REASONS.indexOf(reason) + 1;

/** The earliest of the world's times "earlier today" is 2 hours back; past offsets fit in this span. */
const PAST_SPAN = 3 * HOUR;
/** Far enough from midnight that the compressed past offsets, in whole seconds, stay apart. */
const MIN_SINCE_MIDNIGHT = 60_000;

/**
 * `now` in whole seconds, and the time `offset` ms from it. Everything the world puts "earlier
 * today" (an hour ago, two hours ago) must fall on today's UTC date, or a run in the first hours
 * after midnight UTC would find it in yesterday's window (it did, at 00:35): within `PAST_SPAN` of
 * midnight, past offsets are scaled into the time since midnight, in the same order. Future offsets
 * (expiries) stay as they are.
 */
async function worldClock(): Promise<{ now: Date; at: (offset: number) => Date }> {
  // In the first seconds of a day, wait (at most MIN_SINCE_MIDNIGHT) so the scaled times keep their order.
  const untilRoom = MIN_SINCE_MIDNIGHT - (Date.now() - windowStart(1).getTime());
  if (untilRoom > 0) await new Promise((resolve) => setTimeout(resolve, untilRoom + 1000));
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const sinceMidnight = now.getTime() - windowStart(1, now).getTime();
  const scale = Math.min(1, sinceMidnight / PAST_SPAN);
  return { now, at: (offset) => new Date(now.getTime() + (offset < 0 ? Math.round((offset * scale) / 1000) * 1000 : offset)) };
}

export async function seedReportWorld(knex: Knex): Promise<ReportTimes> {
  const { now, at } = await worldClock();
  const from30 = windowStart(30, now);
  const times: ReportTimes = {
    now,
    seen: at(-HOUR),
    from30,
    shopOrders1Issued: at(-10 * MINUTE),
    shopPaymentsIssued: at(-30 * MINUTE),
    auditorIssued: at(-5 * MINUTE),
    formerIssued: at(-15 * MINUTE),
    edgeInIssued: new Date(from30.getTime() + MINUTE),
  };
  const token = (tokenId: string, clientId: string, resource: string, issuedAt: Date, expiresAt: Date, revokedAt?: Date) => ({
    token_id: tokenId, format: 'jwt', client_id: clientId, subject: clientId, resource, scope: '', binding_method: 'mtls', binding_thumbprint: 'x',
    issued_at: issuedAt, expires_at: expiresAt, revoked_at: revokedAt ?? null,
  });
  await knex('issued_tokens').insert([
    token('shop-o1', 'shop', ORDERS, times.shopOrders1Issued, at(50 * MINUTE)),
    token('shop-o2', 'shop', ORDERS, at(-2 * HOUR), at(HOUR), at(-90 * MINUTE)),
    token('shop-p1', 'shop', PAYMENTS, times.shopPaymentsIssued, at(30 * MINUTE)),
    token('auditor-r1', 'auditor', REPORTS, times.auditorIssued, at(55 * MINUTE)),
    token('former-1', 'former', ORDERS, times.formerIssued, at(45 * MINUTE)),
    // Before the window entirely; one issued just before its start and still valid at it; one just inside.
    token('batch-old', 'batch', ORDERS, new Date(from30.getTime() - 2 * HOUR), new Date(from30.getTime() - HOUR)),
    token('edge-out', 'edge-out', ORDERS, new Date(from30.getTime() - MINUTE), new Date(from30.getTime() + 4 * MINUTE)),
    token('edge-in', 'edge-in', ORDERS, times.edgeInIssued, new Date(from30.getTime() + 6 * MINUTE)),
  ]);
  await knex('client_states').insert({ client_id: 'resting', suspended: true, changed_at: at(-HOUR) });

  const seen = times.seen;
  const accepted = (tokenId: string, count: number, occurredAt = seen, clientId = 'shop'): UseEventInput => ({
    occurredAt, outcome: 'accepted', tokenId, clientId, scopesRequired: 'orders:read', bindingMethod: 'mtls', count,
  });
  const refusals = USE_REFUSAL_REASONS.map((reason): UseEventInput => ({
    occurredAt: seen, outcome: 'refused', reason, code: `ERR_${reason.toUpperCase()}`, clientId: 'shop', scopesRequired: 'orders:read', count: refusalCount(reason),
    ...(reason === 'revoked' ? { tokenId: 'shop-o2' } : {}),
    ...(reason === 'wrong_audience' ? { tokenAudience: ELSEWHERE } : {}),
  }));
  await appendUseEvents(knex, { reporterClientId: 'orders-api', resource: ORDERS, instanceId: 'orders-1' }, [
    accepted('shop-o1', 3),
    // A route that requires no scope: the grant was used, no scope of it.
    { ...accepted('shop-o1', 1), scopesRequired: '' },
    // Revoked 30 minutes before the orders API accepted it.
    accepted('shop-o2', 1),
    ...refusals,
    // The day before a 30-day window begins: inside a 31-day one.
    accepted('batch-old', 1, new Date(from30.getTime() - 12 * HOUR), 'batch'),
  ]);
  await appendUseEvents(knex, { reporterClientId: 'payments-api', resource: PAYMENTS, instanceId: 'payments-1' }, [
    { occurredAt: seen, outcome: 'refused', reason: 'wrong_audience', code: 'ERR_TOKEN_AUDIENCE', tokenId: 'shop-o1', clientId: 'shop', tokenAudience: ORDERS, scopesRequired: 'payments:read', count: 2 },
  ]);
  return times;
}

import type { Knex } from 'knex';
import type { UseRefusalReason } from 'tether-oauth-resource-server';
import { rowsOf } from './rows.js';

/**
 * Use events (issue 19; docs/use-reports.md): what an API saw when a token was presented to it,
 * recorded apart from issuance in `use_events` (append-only, like `ledger_events`), summed into
 * `use_rollups` for the exposure report, and reflected in `issued_tokens.last_used_at`.
 *
 * The narrow storage of use reports: one statement appends a batch, whatever its size (one round
 * trip; the rollup and the last-use update commit with the events or not at all).
 */

/** One presentation (or several identical ones, `count`) as the API reported it. */
export interface UseEventInput {
  occurredAt: Date;
  outcome: 'accepted' | 'refused';
  /** Refused only. */
  reason?: UseRefusalReason;
  /** The verifier's error code (refused only), e.g. `ERR_TOKEN_AUDIENCE`. */
  code?: string;
  tokenId?: string;
  clientId?: string;
  /** The audience the token claimed, recorded when it is not the reporting API's. */
  tokenAudience?: string;
  /** Space-separated scopes the route required. */
  scopesRequired: string;
  bindingMethod?: 'mtls' | 'dpop' | 'bearer';
  count: number;
}

/** Who reported, for which API. */
export interface UseReportOrigin {
  /** The API's own client, as authenticated. */
  reporterClientId: string;
  /** The reporting API: a resource the reporter serves. */
  resource: string;
  instanceId: string;
}

/** What one append wrote. */
export interface UseAppendResult {
  events: number;
  /** How many of the batch's tokens had their `last_used_at` moved forward. */
  tokensTouched: number;
  /** The report's id had been taken before: nothing was written. */
  duplicate: boolean;
}

/** A report's id, taken once (migration 0011), and how long ids are remembered. */
export interface ReportIdentity {
  reportId: string;
  /** Ids received longer ago than this are forgotten (their reports' events are too old to take again). */
  rememberSeconds: number;
}

/**
 * The events as one jsonb array: a single bind parameter whatever the batch size (a multi-row
 * VALUES list would hit the driver's parameter limit, and PGlite takes one statement per call).
 */
function asJsonRecords(events: readonly UseEventInput[]): string {
  return JSON.stringify(events.map((event) => ({
    occurred_at: event.occurredAt.toISOString(),
    outcome: event.outcome,
    reason: event.reason ?? null,
    code: event.code ?? null,
    token_id: event.tokenId ?? null,
    client_id: event.clientId ?? null,
    token_audience: event.tokenAudience ?? null,
    scopes_required: event.scopesRequired,
    binding_method: event.bindingMethod ?? null,
    count: event.count,
  })));
}

/**
 * - `standing`: each event with the token's state in Tether at the moment the API saw it: a token
 *   revoked before that moment is `revoked` (also when the API accepted it: the report's "revoked
 *   and still presented"), one past its expiry `expired`, one Tether never recorded `unknown`.
 *   A reported time later than now is taken as now (the API's clock is not ours to trust).
 * - rollups are grouped and sorted by their key, so that two instances appending overlapping
 *   batches take the rows' locks in the same order (no deadlock).
 * - `last_used_at` only moves forward.
 */
const APPEND_USE_EVENTS = `
  WITH forgotten AS (
    DELETE FROM use_reports_received WHERE ?::text IS NOT NULL AND received_at < now() - make_interval(secs => ?::double precision)
    RETURNING 1
  ), claimed AS (
    -- Under concurrency a second statement with the same id waits for the first to commit, then
    -- does nothing: the report is written by exactly one of them.
    INSERT INTO use_reports_received (reporter_client_id, report_id)
    SELECT ?, ?::text WHERE ?::text IS NOT NULL
    ON CONFLICT ON CONSTRAINT use_reports_received_key DO NOTHING
    RETURNING 1
  ), input AS (
    SELECT least(x.occurred_at, now()) AS occurred_at, x.outcome, x.reason, x.code, x.token_id, x.client_id,
           x.token_audience, x.scopes_required, x.binding_method, x.count
    FROM jsonb_to_recordset(?::jsonb) AS x(occurred_at timestamptz, outcome text, reason text, code text, token_id text,
         client_id text, token_audience text, scopes_required text, binding_method text, count integer)
    WHERE ?::text IS NULL OR EXISTS (SELECT FROM claimed)
  ), standing AS (
    SELECT input.*,
      CASE WHEN t.token_id IS NULL THEN 'unknown'
           WHEN t.revoked_at IS NOT NULL AND t.revoked_at <= input.occurred_at THEN 'revoked'
           WHEN t.expires_at <= input.occurred_at THEN 'expired'
           ELSE 'active' END AS token_state
    FROM input LEFT JOIN issued_tokens t ON t.token_id = input.token_id
  ), appended AS (
    INSERT INTO use_events (occurred_at, reporter_client_id, resource, outcome, reason, code, token_id, client_id,
                            token_audience, scopes_required, binding_method, token_state, count, instance_id)
    SELECT occurred_at, ?, ?, outcome, reason, code, token_id, client_id, token_audience, scopes_required,
           binding_method, token_state, count, ?
    FROM standing
    RETURNING 1
  ), rolled AS (
    INSERT INTO use_rollups AS r (day, resource, client_id, outcome, reason, scopes_required, token_audience, token_state, count, first_at, last_at)
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, ?, coalesce(client_id, ''), outcome, coalesce(reason, ''), scopes_required,
           coalesce(token_audience, ''), token_state, sum(count), min(occurred_at), max(occurred_at)
    FROM standing
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT ON CONSTRAINT use_rollups_key DO UPDATE
      SET count = r.count + excluded.count, first_at = least(r.first_at, excluded.first_at), last_at = greatest(r.last_at, excluded.last_at)
    RETURNING 1
  ), touched AS (
    UPDATE issued_tokens t SET last_used_at = u.last_used_at
    FROM (SELECT token_id, max(occurred_at) AS last_used_at FROM standing
          WHERE outcome = 'accepted' AND token_id IS NOT NULL GROUP BY token_id) u
    WHERE t.token_id = u.token_id AND (t.last_used_at IS NULL OR t.last_used_at < u.last_used_at)
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM appended) AS events, (SELECT count(*) FROM rolled) AS rollups, (SELECT count(*) FROM touched) AS touched,
         (?::text IS NOT NULL AND NOT EXISTS (SELECT FROM claimed)) AS duplicate, (SELECT count(*) FROM forgotten) AS forgotten`;

/**
 * Appends one report's events, their rollups and the tokens' last use, in one statement; with an
 * `identity`, only if no report with its id was taken from this reporter before.
 */
export async function appendUseEvents(
  db: Knex | Knex.Transaction,
  origin: UseReportOrigin,
  events: readonly UseEventInput[],
  identity?: ReportIdentity,
): Promise<UseAppendResult> {
  if (events.length === 0) return { events: 0, tokensTouched: 0, duplicate: false };
  const id = identity?.reportId ?? null;
  const result = await db.raw(APPEND_USE_EVENTS, [
    id, identity?.rememberSeconds ?? 0,
    origin.reporterClientId, id, id,
    asJsonRecords(events), id,
    origin.reporterClientId, origin.resource, origin.instanceId, origin.resource,
    id,
  ]);
  const [row] = rowsOf(result);
  return { events: Number(row?.events ?? 0), tokensTouched: Number(row?.touched ?? 0), duplicate: row?.duplicate === true };
}

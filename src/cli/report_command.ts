import { exposureReport, type ExposureReport, type GrantReport, type PresentationCount } from '../ledger/exposure_report.js';
import { DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS, windowDaysOf } from '../ledger/report_window.js';
import { CommandError, formatTime, UsageError, writeJson, writeLine, writeTable, type CommandContext } from './inventory_output.js';

/**
 * `tether report`: the exposure report (docs/report.md) — who holds live tokens for which API,
 * which grants are wider than their use, which clients are idle, and what the APIs refused.
 */

export interface ReportOptions {
  /** Whole UTC days, today included. */
  window?: number;
  client?: string;
  resource?: string;
  json?: boolean;
}

/** The admin API's `window` parameter, checked as the CLI checks the option. */
export function windowOfInput(value: string | undefined): number {
  if (value === undefined) return DEFAULT_WINDOW_DAYS;
  const days = windowDaysOf(value);
  if (days === undefined) throw new UsageError(`window must be a number of days from 1 to ${MAX_WINDOW_DAYS}, e.g. 30d (got ${JSON.stringify(value)})`);
  return days;
}

const iso = (date: Date | undefined) => date?.toISOString() ?? null;

/** The report as `--json` prints it (snake_case names, ISO times, null for "none"). */
export function reportJson(report: ExposureReport): Record<string, unknown> {
  const presentation = (row: PresentationCount) => ({ resource: row.resource, client_id: row.clientId || null, outcome: row.outcome, count: row.count, last_at: iso(row.lastAt) });
  return {
    window: { days: report.window.days, from: iso(report.window.from), to: iso(report.window.to) },
    filter: { client: report.filter.clientId ?? null, resource: report.filter.resource ?? null },
    records_since: iso(report.recordsSince),
    clients: report.clients.map((client) => ({
      client_id: client.clientId, configured: client.configured, has_grants: client.hasGrants, serves_api: client.servesApi, suspended: client.suspended, live_tokens: client.liveTokens,
      issued_in_window: client.issuedInWindow, uses: client.uses, last_issued_at: iso(client.lastIssuedAt), last_used_at: iso(client.lastUsedAt), idle: client.idle,
    })),
    resources: report.resources.map((resource) => ({
      resource: resource.resource, configured: resource.configured, live_tokens: resource.liveTokens, issued_in_window: resource.issuedInWindow,
      last_issued_at: iso(resource.lastIssuedAt), last_used_at: iso(resource.lastUsedAt), use_reported: resource.useReported, accepted: resource.accepted, refused: resource.refused,
    })),
    grants: report.grants.map((grant) => ({
      client_id: grant.clientId, resource: grant.resource, configured: grant.configured, granted_scopes: grant.grantedScopes, used_scopes: grant.usedScopes,
      unused_scopes: grant.unusedScopes ?? null, use_reported: grant.useReported, uses: grant.uses, live_tokens: grant.liveTokens, issued_in_window: grant.issuedInWindow,
      last_issued_at: iso(grant.lastIssuedAt), last_used_at: iso(grant.lastUsedAt), suggestion: grant.suggestion ?? null,
    })),
    idle_clients: report.idleClients,
    refusals: report.refusals.map((row) => ({ resource: row.resource, reason: row.reason, count: row.count, last_at: iso(row.lastAt) })),
    lateral_movement: report.lateralMovement.map((row) => ({
      presented_at: row.resource, token_audience: row.tokenAudience, audience_known: row.audienceKnown, client_id: row.clientId || null,
      count: row.count, first_at: iso(row.firstAt), last_at: iso(row.lastAt),
    })),
    replays: report.replays.map(presentation),
    revoked_presented: report.revokedPresented.map(presentation),
  };
}

const count = (value: number) => value.toLocaleString('en-US');
const scopeList = (scopes: readonly string[]) => scopes.join(' ') || '-';

function unusedCell(grant: GrantReport): string {
  if (!grant.configured) return 'not granted now';
  if (grant.unusedScopes === undefined) return '(API reports no use)';
  return grant.suggestion === 'unused' ? 'all: grant unused' : scopeList(grant.unusedScopes);
}

function suggestionLine(grant: GrantReport, days: number): string | undefined {
  if (grant.suggestion === 'unused') return `  ${grant.clientId} on ${grant.resource}: no use in ${days} days although the API reports use; remove the grant?`;
  if (grant.suggestion === 'narrow') return `  ${grant.clientId} on ${grant.resource}: ${scopeList(grant.unusedScopes ?? [])} never required in ${days} days; narrow the grant to ${scopeList(grant.usedScopes)}`;
  return undefined;
}

function clientState(client: ExposureReport['clients'][number]): string {
  if (!client.configured) return 'not configured';
  if (client.suspended) return 'suspended';
  if (!client.hasGrants) return 'no grants';
  if (client.idle) return client.servesApi ? 'idle (an API\'s own client)' : 'IDLE';
  return 'active';
}

function writeText(context: CommandContext, report: ExposureReport): void {
  const { window } = report;
  const scope = [report.filter.clientId && `client ${report.filter.clientId}`, report.filter.resource && `API ${report.filter.resource}`].filter(Boolean).join(', ');
  writeLine(context, `exposure report: ${window.days} day${window.days === 1 ? '' : 's'}, ${formatTime(window.from)} to ${formatTime(window.to)} (whole UTC days; use is summed per day)${scope ? `, ${scope}` : ''}`);
  if (report.recordsSince === undefined) writeLine(context, 'the ledger has no events yet: idleness has no history to go by');
  else if (report.recordsSince > window.from) writeLine(context, `the ledger begins ${formatTime(report.recordsSince)}, after the window's start: idleness covers less than the window`);

  writeLine(context);
  writeLine(context, 'clients');
  writeTable(context, ['CLIENT', 'LIVE TOKENS', 'ISSUED', 'USES', 'LAST ISSUED', 'LAST USED', 'STATE'], report.clients.map((client) => [
    client.clientId, count(client.liveTokens), count(client.issuedInWindow), count(client.uses), formatTime(client.lastIssuedAt), formatTime(client.lastUsedAt), clientState(client),
  ]));
  if (report.idleClients.length) {
    writeLine(context);
    writeLine(context, `idle for ${window.days} days (no issuance, no use): candidates to suspend (tether clients suspend <id>)`);
    for (const id of report.idleClients) writeLine(context, `  ${id}`);
  }

  writeLine(context);
  writeLine(context, 'APIs');
  writeTable(context, ['RESOURCE', 'LIVE TOKENS', 'ISSUED', 'ACCEPTED', 'REFUSED', 'LAST ISSUED', 'LAST USED', 'USE REPORTS'], report.resources.map((resource) => [
    resource.resource, count(resource.liveTokens), count(resource.issuedInWindow), count(resource.accepted), count(resource.refused),
    formatTime(resource.lastIssuedAt), formatTime(resource.lastUsedAt), resource.useReported ? 'yes' : 'none',
  ]));

  writeLine(context);
  writeLine(context, 'grants (per client and API)');
  writeTable(context, ['CLIENT', 'RESOURCE', 'LIVE', 'USES', 'LAST USED', 'GRANTED', 'USED', 'NEVER USED'], report.grants.map((grant) => [
    grant.clientId, grant.resource, count(grant.liveTokens), count(grant.uses), formatTime(grant.lastUsedAt),
    scopeList(grant.grantedScopes), scopeList(grant.usedScopes), unusedCell(grant),
  ]));
  const suggestions = report.grants.map((grant) => suggestionLine(grant, window.days)).filter((line) => line !== undefined);
  if (suggestions.length) {
    writeLine(context);
    writeLine(context, 'suggest narrowing');
    for (const line of suggestions) writeLine(context, line);
  }

  writeLine(context);
  writeLine(context, 'refused presentations (by API and reason)');
  writeTable(context, ['RESOURCE', 'REASON', 'COUNT', 'LAST'], report.refusals.map((row) => [row.resource, row.reason, count(row.count), formatTime(row.lastAt)]));

  writeLine(context);
  writeLine(context, 'LATERAL MOVEMENT: tokens for one API presented at another (wrong_audience)');
  writeTable(context, ['PRESENTED AT', 'TOKEN FOR', 'CLIENT', 'COUNT', 'FIRST', 'LAST'], report.lateralMovement.map((row) => [
    row.resource, `${row.tokenAudience}${row.audienceKnown ? '' : ' (not a Tether API)'}`, row.clientId || '-', count(row.count), formatTime(row.firstAt), formatTime(row.lastAt),
  ]));

  writeLine(context);
  writeLine(context, 'replayed DPoP proofs');
  writeTable(context, ['RESOURCE', 'CLIENT', 'COUNT', 'LAST'], report.replays.map((row) => [row.resource, row.clientId || '-', count(row.count), formatTime(row.lastAt)]));

  writeLine(context);
  writeLine(context, 'revoked tokens still presented (ACCEPTED: that API does not check revocation)');
  writeTable(context, ['RESOURCE', 'CLIENT', 'OUTCOME', 'COUNT', 'LAST'], report.revokedPresented.map((row) => [
    row.resource, row.clientId || '-', row.outcome === 'accepted' ? 'ACCEPTED' : 'refused', count(row.count), formatTime(row.lastAt),
  ]));
}

/**
 * A `--client` or `--resource` that names nothing the configuration or the window knows is a typo,
 * not an empty report (exit code 1, as `tether tokens revoke --client` does).
 */
function checkFilterMatched(report: ExposureReport, options: ReportOptions): void {
  if (options.client !== undefined && !report.clients.some((client) => client.clientId === options.client)) {
    throw new CommandError(`no client ${JSON.stringify(options.client)} in the configuration or in the window's records: nothing to report (tether clients list shows them)`);
  }
  const named = report.resources.some((resource) => resource.resource === options.resource) || report.lateralMovement.length > 0;
  if (options.resource !== undefined && !named) {
    throw new CommandError(`no resource ${JSON.stringify(options.resource)} in the configuration or in the window's records: nothing to report (resources are exact URIs, as in the configuration)`);
  }
}

/** `tether report [--window 30d] [--client X] [--resource U] [--json]`. */
export async function reportCommand(context: CommandContext, options: ReportOptions = {}): Promise<ExposureReport> {
  const report = await exposureReport(context.knex, context.config, { days: options.window ?? DEFAULT_WINDOW_DAYS, clientId: options.client, resource: options.resource });
  checkFilterMatched(report, options);
  if (options.json) writeJson(context, reportJson(report));
  else writeText(context, report);
  return report;
}

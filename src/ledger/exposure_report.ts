import type { Knex } from 'knex';
import type { UseRefusalReason } from 'tether-oauth-resource-server';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import { scopesOf } from '../oauth/scope.js';
import { clientStates } from './inventory_queries.js';
import { rowsOf } from './rows.js';

/**
 * The exposure report (issue 19; docs/report.md): per client and per API, over a window of whole
 * UTC days — live tokens, last issuance and use, granted scopes never used, idle clients, and what
 * the APIs refused (lateral movement, replays, revoked tokens still presented).
 *
 * Use is read from `use_rollups` only (summed per day in the statement that appends the events,
 * ledger/use_events.ts), so the report's cost follows the number of distinct (day, API, client,
 * outcome, reason, scopes, audience, state) keys, not the number of events. Issuance is read from
 * `issued_tokens`, bounded to the tokens that were still valid when the window began. Each query is
 * a named function, so that `npm run bench -- report` times each one (bench/report/section.ts).
 */

type Db = Knex | Knex.Transaction;

/** The report's window: `days` whole UTC days, today included; `from` is 00:00 UTC of the first. */
export interface ReportWindow {
  days: number;
  from: Date;
  /** The database's `now()`, the clock issuance, revocation and the rollups were written with. */
  to: Date;
  /** `from` as the `use_rollups.day` it starts at (YYYY-MM-DD). */
  fromDay: string;
}

export interface ReportFilter {
  clientId?: string;
  resource?: string;
}

const dateOf = (value: unknown): Date => (value instanceof Date ? value : new Date(value as string));
const optionalDate = (value: unknown): Date | undefined => (value === null || value === undefined ? undefined : dateOf(value));

// ---------------------------------------------------------------------------------------------
// The queries. Each takes the window and the filter, and returns plain rows.
// ---------------------------------------------------------------------------------------------

/** Today (UTC) and the `days - 1` days before it, on the database clock. */
export async function reportWindow(db: Db, days: number): Promise<ReportWindow> {
  const [row] = rowsOf(await db.raw(`
    SELECT now() AS now,
           (date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => ?)) AT TIME ZONE 'UTC' AS start,
           to_char(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => ?), 'YYYY-MM-DD') AS start_day`, [days - 1, days - 1]));
  return { days, from: dateOf(row!.start), to: dateOf(row!.now), fromDay: String(row!.start_day) };
}

/** Per client and API: tokens still valid at the window's start, of which live, issued in it, and the latest issuance and use in it. */
export interface TokenFacts {
  clientId: string;
  resource: string;
  liveTokens: number;
  issuedInWindow: number;
  lastIssuedAt: Date | undefined;
  /** `issued_tokens.last_used_at` (introspection and accepted use reports). */
  lastUsedAt: Date | undefined;
}

/**
 * A token issued in the window, or used in it, expires after the window's start: the rows read are
 * the tokens that were valid at some moment of the window, never the whole history, through the
 * BRIN index `issued_tokens_expires_at_brin` (migration 0010; the planner reads the table itself
 * when the window covers most of it).
 */
export async function tokenFacts(db: Db, window: ReportWindow, filter: ReportFilter): Promise<TokenFacts[]> {
  const rows = rowsOf(await db.raw(`
    SELECT client_id, resource,
           count(*) FILTER (WHERE revoked_at IS NULL AND expires_at > now())::int AS live_tokens,
           count(*) FILTER (WHERE issued_at >= :from)::int AS issued,
           max(issued_at) FILTER (WHERE issued_at >= :from) AS last_issued_at,
           max(last_used_at) FILTER (WHERE last_used_at >= :from) AS last_used_at
    FROM issued_tokens
    WHERE expires_at > :from
      AND (:client::text IS NULL OR client_id = :client) AND (:resource::text IS NULL OR resource = :resource)
    GROUP BY client_id, resource`, { from: window.from, client: filter.clientId ?? null, resource: filter.resource ?? null }));
  return rows.map(tokenFactsOf);
}

function tokenFactsOf(row: Record<string, unknown>): TokenFacts {
  return {
    clientId: String(row.client_id),
    resource: String(row.resource),
    liveTokens: Number(row.live_tokens),
    issuedInWindow: Number(row.issued),
    lastIssuedAt: optionalDate(row.last_issued_at),
    lastUsedAt: optionalDate(row.last_used_at),
  };
}

/** Accepted presentations per client, API and the scopes the route required. */
export interface AcceptedUse {
  clientId: string;
  resource: string;
  scopesRequired: string[];
  count: number;
  lastAt: Date;
}

/** The window's rollup days (the primary key `use_rollups_key` begins with `day`). */
const ROLLUP_WINDOW = `day >= :fromDay::date
  AND (:client::text IS NULL OR client_id = :client) AND (:resource::text IS NULL OR resource = :resource)`;

const rollupBindings = (window: ReportWindow, filter: ReportFilter) => ({ fromDay: window.fromDay, client: filter.clientId ?? null, resource: filter.resource ?? null });

export async function acceptedUse(db: Db, window: ReportWindow, filter: ReportFilter): Promise<AcceptedUse[]> {
  const rows = rowsOf(await db.raw(`
    SELECT client_id, resource, scopes_required, sum(count)::bigint AS count, max(last_at) AS last_at
    FROM use_rollups
    WHERE outcome = 'accepted' AND ${ROLLUP_WINDOW}
    GROUP BY client_id, resource, scopes_required`, rollupBindings(window, filter)));
  return rows.map((row) => ({
    clientId: String(row.client_id),
    resource: String(row.resource),
    scopesRequired: scopesOf(String(row.scopes_required)),
    count: Number(row.count),
    lastAt: dateOf(row.last_at),
  }));
}

/** What each API reported in the window, accepted and refused: an API with no row reports no use. */
export interface ResourceUse {
  resource: string;
  accepted: number;
  refused: number;
  lastAt: Date;
}

/**
 * Per API: whether it reported anything in the window, from any client (an API that reports use at
 * all is one whose silence about a grant means something), and the presentations of the filter's client.
 */
export async function useByResource(db: Db, window: ReportWindow, filter: ReportFilter): Promise<ResourceUse[]> {
  const rows = rowsOf(await db.raw(`
    SELECT resource,
           coalesce(sum(count) FILTER (WHERE outcome = 'accepted' AND (:client::text IS NULL OR client_id = :client)), 0)::bigint AS accepted,
           coalesce(sum(count) FILTER (WHERE outcome = 'refused' AND (:client::text IS NULL OR client_id = :client)), 0)::bigint AS refused,
           max(last_at) AS last_at
    FROM use_rollups
    WHERE day >= :fromDay::date AND (:resource::text IS NULL OR resource = :resource)
    GROUP BY resource`, rollupBindings(window, filter)));
  return rows.map((row) => ({ resource: String(row.resource), accepted: Number(row.accepted), refused: Number(row.refused), lastAt: dateOf(row.last_at) }));
}

export interface RefusalCount {
  resource: string;
  reason: UseRefusalReason;
  count: number;
  lastAt: Date;
}

export async function refusalsByReason(db: Db, window: ReportWindow, filter: ReportFilter): Promise<RefusalCount[]> {
  const rows = rowsOf(await db.raw(`
    SELECT resource, reason, sum(count)::bigint AS count, max(last_at) AS last_at
    FROM use_rollups
    WHERE outcome = 'refused' AND ${ROLLUP_WINDOW}
    GROUP BY resource, reason`, rollupBindings(window, filter)));
  return rows.map((row) => ({ resource: String(row.resource), reason: String(row.reason) as UseRefusalReason, count: Number(row.count), lastAt: dateOf(row.last_at) }));
}

/** A token for one API (`tokenAudience`) presented at another (`resource`). */
export interface LateralPresentation {
  resource: string;
  tokenAudience: string;
  /** '' when the token named no client. */
  clientId: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
}

/**
 * `wrong_audience` refusals whose token named its audience. With `--resource`, both directions:
 * tokens presented at that API, and that API's tokens presented elsewhere.
 */
export async function lateralPresentations(db: Db, window: ReportWindow, filter: ReportFilter): Promise<LateralPresentation[]> {
  const rows = rowsOf(await db.raw(`
    SELECT resource, token_audience, client_id, sum(count)::bigint AS count, min(first_at) AS first_at, max(last_at) AS last_at
    FROM use_rollups
    WHERE day >= :fromDay::date AND outcome = 'refused' AND reason = 'wrong_audience' AND token_audience <> ''
      AND (:client::text IS NULL OR client_id = :client)
      AND (:resource::text IS NULL OR resource = :resource OR token_audience = :resource)
    GROUP BY resource, token_audience, client_id`, rollupBindings(window, filter)));
  return rows.map((row) => ({
    resource: String(row.resource), tokenAudience: String(row.token_audience), clientId: String(row.client_id),
    count: Number(row.count), firstAt: dateOf(row.first_at), lastAt: dateOf(row.last_at),
  }));
}

/** Per API and client: presentations of a given kind (replays, revoked tokens), with their outcome. */
export interface PresentationCount {
  resource: string;
  clientId: string;
  outcome: 'accepted' | 'refused';
  count: number;
  lastAt: Date;
}

const presentationOf = (row: Record<string, unknown>): PresentationCount => ({
  resource: String(row.resource), clientId: String(row.client_id), outcome: row.outcome as 'accepted' | 'refused', count: Number(row.count), lastAt: dateOf(row.last_at),
});

/** DPoP proofs presented a second time (RFC 9449 §11.1): a copied request, or a stolen proof. */
export async function replayedProofs(db: Db, window: ReportWindow, filter: ReportFilter): Promise<PresentationCount[]> {
  const rows = rowsOf(await db.raw(`
    SELECT resource, client_id, outcome, sum(count)::bigint AS count, max(last_at) AS last_at
    FROM use_rollups
    WHERE outcome = 'refused' AND reason = 'replayed_proof' AND ${ROLLUP_WINDOW}
    GROUP BY resource, client_id, outcome`, rollupBindings(window, filter)));
  return rows.map(presentationOf);
}

/**
 * Tokens presented after Tether recorded their revocation (`token_state`, fixed when the report
 * arrived), refused or — the alarming case — accepted: an API that does not check revocation.
 */
export async function revokedPresentations(db: Db, window: ReportWindow, filter: ReportFilter): Promise<PresentationCount[]> {
  const rows = rowsOf(await db.raw(`
    SELECT resource, client_id, outcome, sum(count)::bigint AS count, max(last_at) AS last_at
    FROM use_rollups
    WHERE token_state = 'revoked' AND ${ROLLUP_WINDOW}
    GROUP BY resource, client_id, outcome`, rollupBindings(window, filter)));
  return rows.map(presentationOf);
}

/** When the ledger's oldest event happened (`ledger_events_occurred_at`): a younger ledger covers less than the window. */
export async function recordsSince(db: Db): Promise<Date | undefined> {
  const [row] = rowsOf(await db.raw('SELECT min(occurred_at) AS since FROM ledger_events'));
  return optionalDate(row?.since);
}

// ---------------------------------------------------------------------------------------------
// The report, assembled from the rows (pure).
// ---------------------------------------------------------------------------------------------

export interface ReportFacts {
  window: ReportWindow;
  recordsSince: Date | undefined;
  tokens: TokenFacts[];
  accepted: AcceptedUse[];
  resources: ResourceUse[];
  refusals: RefusalCount[];
  lateral: LateralPresentation[];
  replays: PresentationCount[];
  revoked: PresentationCount[];
  suspended: ReadonlySet<string>;
}

/**
 * `narrow`: some granted scopes were never required in the window; `unused`: the API reported use
 * in the window, none of it with this grant. Nothing is suggested for an API that reported nothing:
 * silence is not evidence.
 */
export type GrantSuggestion = 'narrow' | 'unused';

export interface GrantReport {
  clientId: string;
  resource: string;
  /** In the configuration (client_credentials `resources` or `exchange.targets`). */
  configured: boolean;
  grantedScopes: string[];
  usedScopes: string[];
  /** Undefined when the API reported no use in the window. */
  unusedScopes: string[] | undefined;
  useReported: boolean;
  uses: number;
  liveTokens: number;
  issuedInWindow: number;
  lastIssuedAt: Date | undefined;
  lastUsedAt: Date | undefined;
  suggestion: GrantSuggestion | undefined;
}

export interface ClientReport {
  clientId: string;
  configured: boolean;
  suspended: boolean;
  /** Holds a grant in the configuration (for the filter's API): only such a client obtains tokens, so only it can be idle. */
  hasGrants: boolean;
  /** An API's own client (`servedBy` or `introspectors` of a resource): it introspects and reports for that API. */
  servesApi: boolean;
  liveTokens: number;
  issuedInWindow: number;
  uses: number;
  lastIssuedAt: Date | undefined;
  lastUsedAt: Date | undefined;
  /** Holds a grant, and no issuance and no use in the window. */
  idle: boolean;
}

export interface ResourceReport {
  resource: string;
  configured: boolean;
  liveTokens: number;
  issuedInWindow: number;
  lastIssuedAt: Date | undefined;
  lastUsedAt: Date | undefined;
  useReported: boolean;
  accepted: number;
  refused: number;
}

export interface ExposureReport {
  window: ReportWindow;
  filter: ReportFilter;
  recordsSince: Date | undefined;
  clients: ClientReport[];
  resources: ResourceReport[];
  grants: GrantReport[];
  /**
   * Candidates to suspend: idle, configured, not suspended, and not an API's own client (suspending
   * that would break the API it introspects and reports for, whether it reported or not).
   */
  idleClients: string[];
  refusals: RefusalCount[];
  lateralMovement: (LateralPresentation & { audienceKnown: boolean })[];
  replays: PresentationCount[];
  revokedPresented: PresentationCount[];
}

const latest = (...dates: (Date | undefined)[]): Date | undefined =>
  dates.reduce<Date | undefined>((best, date) => (date && (!best || date > best) ? date : best), undefined);

const pairKey = (clientId: string, resource: string) => JSON.stringify([clientId, resource]);

/** Rows grouped by a key, built once: the report joins thousands of rows to thousands of pairs. */
function groupedBy<T>(rows: readonly T[], key: (row: T) => string): ReadonlyMap<string, readonly T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const group = groups.get(key(row));
    if (group) group.push(row);
    else groups.set(key(row), [row]);
  }
  return groups;
}

/** The facts by (client, API), for {@link grantReport}. */
interface FactsByPair {
  tokens: ReadonlyMap<string, readonly TokenFacts[]>;
  accepted: ReadonlyMap<string, readonly AcceptedUse[]>;
  reporting: ReadonlySet<string>;
}

/** A client's grant for one API: the scopes of client_credentials and of token exchange together. */
function grantedScopes(client: ClientConfig, resource: string): string[] | undefined {
  const direct = client.resources[resource];
  const exchanged = client.exchange.targets[resource];
  if (direct === undefined && exchanged === undefined) return undefined;
  return [...new Set([...(direct ?? []), ...(exchanged ?? [])])].sort();
}

function configuredGrants(config: TetherConfig, filter: ReportFilter): [string, string][] {
  return config.clients
    .filter((client) => !filter.clientId || client.id === filter.clientId)
    .flatMap((client) => [...new Set([...Object.keys(client.resources), ...Object.keys(client.exchange.targets)])]
      .filter((resource) => !filter.resource || resource === filter.resource)
      .map((resource): [string, string] => [client.id, resource]));
}

function grantReport(client: ClientConfig | undefined, facts: FactsByPair, clientId: string, resource: string): GrantReport {
  const granted = client ? grantedScopes(client, resource) : undefined;
  const [tokens] = facts.tokens.get(pairKey(clientId, resource)) ?? [];
  const uses = facts.accepted.get(pairKey(clientId, resource)) ?? [];
  const usedScopes = [...new Set(uses.flatMap((row) => row.scopesRequired))].sort();
  const useReported = facts.reporting.has(resource);
  const unusedScopes = useReported ? (granted ?? []).filter((scope) => !usedScopes.includes(scope)) : undefined;
  const count = uses.reduce((sum, row) => sum + row.count, 0);
  let suggestion: GrantSuggestion | undefined;
  if (granted !== undefined && useReported && count === 0) suggestion = 'unused';
  else if (granted !== undefined && unusedScopes?.length) suggestion = 'narrow';
  return {
    clientId,
    resource,
    configured: granted !== undefined,
    grantedScopes: granted ?? [],
    usedScopes,
    unusedScopes,
    useReported,
    uses: count,
    liveTokens: tokens?.liveTokens ?? 0,
    issuedInWindow: tokens?.issuedInWindow ?? 0,
    lastIssuedAt: tokens?.lastIssuedAt,
    lastUsedAt: latest(tokens?.lastUsedAt, ...uses.map((row) => row.lastAt)),
    suggestion,
  };
}

function clientReport(config: TetherConfig, facts: ReportFacts, clientId: string, own: readonly GrantReport[]): ClientReport {
  const client = config.clients.find((candidate) => candidate.id === clientId);
  const issuedInWindow = own.reduce((sum, grant) => sum + grant.issuedInWindow, 0);
  const uses = own.reduce((sum, grant) => sum + grant.uses, 0);
  const lastUsedAt = latest(...own.map((grant) => grant.lastUsedAt));
  const hasGrants = own.some((grant) => grant.configured);
  return {
    clientId,
    configured: client !== undefined,
    suspended: facts.suspended.has(clientId),
    hasGrants,
    servesApi: config.resources.some((resource) => resource.servedBy.includes(clientId) || resource.introspectors.includes(clientId)),
    liveTokens: own.reduce((sum, grant) => sum + grant.liveTokens, 0),
    issuedInWindow,
    uses,
    lastIssuedAt: latest(...own.map((grant) => grant.lastIssuedAt)),
    lastUsedAt,
    idle: hasGrants && issuedInWindow === 0 && uses === 0 && lastUsedAt === undefined,
  };
}

function resourceReport(config: TetherConfig, resource: string, own: readonly GrantReport[], use: ResourceUse | undefined): ResourceReport {
  return {
    resource,
    configured: config.resources.some((candidate) => candidate.uri === resource),
    liveTokens: own.reduce((sum, grant) => sum + grant.liveTokens, 0),
    issuedInWindow: own.reduce((sum, grant) => sum + grant.issuedInWindow, 0),
    lastIssuedAt: latest(...own.map((grant) => grant.lastIssuedAt)),
    lastUsedAt: latest(...own.map((grant) => grant.lastUsedAt)),
    useReported: use !== undefined,
    accepted: use?.accepted ?? 0,
    refused: use?.refused ?? 0,
  };
}

/** The distinct `names`, those of `configured` first in its order, then the others sorted. */
function inConfiguredOrder(configured: readonly string[], names: readonly string[]): string[] {
  const present = new Set(names);
  const known = new Set(configured);
  return [...configured.filter((name) => present.has(name)), ...[...present].filter((name) => !known.has(name)).sort()];
}

const byCountThenName = <T extends { count: number }>(key: (row: T) => string) => (a: T, b: T) => b.count - a.count || key(a).localeCompare(key(b));

/**
 * Rows: every configured client and API (as the filter allows), every configured grant, and every
 * pair the tables name that the configuration does not (a client removed, a grant withdrawn).
 */
export function assembleReport(config: TetherConfig, facts: ReportFacts, filter: ReportFilter): ExposureReport {
  const reporting = new Set(facts.resources.map((row) => row.resource));
  const configured = configuredGrants(config, filter);
  const seen = [...facts.tokens, ...facts.accepted].map((row): [string, string] => [row.clientId, row.resource]);
  const pairs = [...new Map([...configured, ...seen].map((pair) => [pairKey(...pair), pair])).values()];
  const byPair: FactsByPair = {
    tokens: groupedBy(facts.tokens, (row) => pairKey(row.clientId, row.resource)),
    accepted: groupedBy(facts.accepted, (row) => pairKey(row.clientId, row.resource)),
    reporting,
  };
  const clientsById = new Map(config.clients.map((client) => [client.id, client]));
  const grants = pairs.map(([clientId, resource]) => grantReport(clientsById.get(clientId), byPair, clientId, resource));
  const grantsOfClient = groupedBy(grants, (grant) => grant.clientId);
  const grantsOfResource = groupedBy(grants, (grant) => grant.resource);

  // With --resource, the clients of that API's rows; with --client, the APIs of that client's rows.
  // Configured ones first, in the configuration's order; then the ones only the tables name.
  const configuredClients = config.clients.map((client) => client.id);
  const clientIds = inConfiguredOrder(configuredClients, [
    ...(filter.resource ? [] : configuredClients.filter((id) => !filter.clientId || id === filter.clientId)),
    ...pairs.map(([clientId]) => clientId),
  ]);
  const clients = clientIds.map((clientId) => clientReport(config, facts, clientId, grantsOfClient.get(clientId) ?? []));

  const configuredResources = config.resources.map((resource) => resource.uri);
  const presentedBy = facts.resources.filter((row) => !filter.clientId || row.accepted + row.refused > 0).map((row) => row.resource);
  const resourceUris = inConfiguredOrder(configuredResources, [
    ...(filter.clientId ? [] : configuredResources.filter((uri) => !filter.resource || uri === filter.resource)),
    ...pairs.map(([, resource]) => resource),
    ...presentedBy,
  ]);
  const useOf = new Map(facts.resources.map((row) => [row.resource, row]));
  const resources = resourceUris.map((resource) => resourceReport(config, resource, grantsOfResource.get(resource) ?? [], useOf.get(resource)));

  const order = new Map(clientIds.map((id, index) => [id, index]));
  grants.sort((a, b) => (order.get(a.clientId)! - order.get(b.clientId)!) || a.resource.localeCompare(b.resource));
  const known = new Set(config.resources.map((resource) => resource.uri));
  return {
    window: facts.window,
    filter,
    recordsSince: facts.recordsSince,
    clients,
    resources,
    grants,
    idleClients: clients.filter((client) => client.idle && client.configured && !client.suspended && !client.servesApi).map((client) => client.clientId),
    refusals: [...facts.refusals].sort((a, b) => a.resource.localeCompare(b.resource) || b.count - a.count || a.reason.localeCompare(b.reason)),
    lateralMovement: facts.lateral.map((row) => ({ ...row, audienceKnown: known.has(row.tokenAudience) }))
      .sort(byCountThenName((row) => `${row.resource} ${row.tokenAudience} ${row.clientId}`)),
    replays: [...facts.replays].sort(byCountThenName((row) => `${row.resource} ${row.clientId}`)),
    revokedPresented: [...facts.revoked].sort((a, b) => (a.outcome === b.outcome ? 0 : a.outcome === 'accepted' ? -1 : 1) || b.count - a.count || `${a.resource} ${a.clientId}`.localeCompare(`${b.resource} ${b.clientId}`)),
  };
}

/** Every query of the report, by name: the report runs them all, the benchmark times each. */
export const REPORT_QUERIES = {
  tokenFacts,
  acceptedUse,
  useByResource,
  refusalsByReason,
  lateralPresentations,
  replayedProofs,
  revokedPresentations,
} as const;

/** Runs the report's queries on the database and assembles it. */
export async function exposureReport(db: Db, config: TetherConfig, options: { days: number } & ReportFilter): Promise<ExposureReport> {
  const filter: ReportFilter = { clientId: options.clientId, resource: options.resource };
  const window = await reportWindow(db, options.days);
  const [tokens, accepted, resources, refusals, lateral, replays, revoked, since, states] = await Promise.all([
    tokenFacts(db, window, filter),
    acceptedUse(db, window, filter),
    useByResource(db, window, filter),
    refusalsByReason(db, window, filter),
    lateralPresentations(db, window, filter),
    replayedProofs(db, window, filter),
    revokedPresentations(db, window, filter),
    recordsSince(db),
    clientStates(db),
  ]);
  const suspended = new Set([...states].filter(([, state]) => state.suspended).map(([id]) => id));
  return assembleReport(config, { window, recordsSince: since, tokens, accepted, resources, refusals, lateral, replays, revoked, suspended }, filter);
}

import type { ClientConfig } from '../config/schema.js';
import { resumeClient, suspendClient } from '../ledger/client_states.js';
import { clientStates, latestEvents, tokenCountsByClient } from '../ledger/inventory_queries.js';
import { notFoundHint } from './command_conventions.js';
import {
  CommandError, abbreviate, causeOf, eventJson, eventLine, formatTime, writeFields, writeJson, writeLine, writeTable, type CommandContext,
} from './inventory_output.js';

/**
 * `tether clients list|show|suspend|resume`: every client is a managed identity with an owner and a
 * purpose; a suspended client gets no new tokens and its live tokens are revoked.
 */

/** The resources a client may hold tokens for: by client_credentials, and by token exchange. */
function permittedResources(client: ClientConfig): string[] {
  return [...new Set([...Object.keys(client.resources), ...Object.keys(client.exchange.targets)])];
}

interface ClientSummary {
  client_id: string;
  owner: string | null;
  purpose: string | null;
  configured: boolean;
  resources: string[];
  suspended: boolean;
  active_tokens: number;
  total_tokens: number;
}

type ClientStates = Awaited<ReturnType<typeof clientStates>>;

/** Every configured client, then clients removed from the configuration that still hold tokens or a state row. */
async function clientSummaries(context: CommandContext): Promise<{ summaries: ClientSummary[]; states: ClientStates }> {
  const [counts, states] = await Promise.all([tokenCountsByClient(context.knex), clientStates(context.knex)]);
  const summaryOf = (clientId: string, client: ClientConfig | undefined): ClientSummary => ({
    client_id: clientId,
    owner: client?.owner ?? null,
    purpose: client?.purpose ?? null,
    configured: client !== undefined,
    resources: client ? permittedResources(client) : [],
    suspended: states.get(clientId)?.suspended ?? false,
    active_tokens: counts.get(clientId)?.active ?? 0,
    total_tokens: counts.get(clientId)?.total ?? 0,
  });
  const known = new Set(context.config.clients.map((client) => client.id));
  const former = [...new Set([...counts.keys(), ...states.keys()])].filter((id) => !known.has(id)).sort();
  return {
    summaries: [
      ...context.config.clients.map((client) => summaryOf(client.id, client)),
      ...former.map((id) => summaryOf(id, undefined)),
    ],
    states,
  };
}

function stateLabel(summary: ClientSummary): string {
  if (!summary.configured) return summary.suspended ? 'suspended, not configured' : 'not configured';
  return summary.suspended ? 'suspended' : 'active';
}

export async function clientsList(context: CommandContext, options: { json?: boolean } = {}): Promise<void> {
  const { summaries } = await clientSummaries(context);
  if (options.json) {
    writeJson(context, summaries);
    return;
  }
  writeTable(context, ['CLIENT', 'OWNER', 'PURPOSE', 'RESOURCES', 'ACTIVE TOKENS', 'STATE'], summaries.map((summary) => [
    summary.client_id,
    summary.owner ?? '-',
    abbreviate(summary.purpose ?? '-', 40),
    summary.resources.join(', ') || '-',
    String(summary.active_tokens),
    stateLabel(summary),
  ]));
}

function configuredClient(context: CommandContext, clientId: string): ClientConfig | undefined {
  return context.config.clients.find((client) => client.id === clientId);
}

export async function clientsShow(context: CommandContext, clientId: string, options: { json?: boolean; events?: number } = {}): Promise<void> {
  const { summaries, states } = await clientSummaries(context);
  const summary = summaries.find((candidate) => candidate.client_id === clientId);
  if (!summary) throw new CommandError(`no client ${JSON.stringify(clientId)} in the configuration or the ledger${notFoundHint(clientId)}`);
  const client = configuredClient(context, clientId);
  const state = states.get(clientId);
  const events = await latestEvents(context.knex, options.events ?? 10, { clientId });
  const introspects = context.config.resources.filter((resource) => resource.introspectors.includes(clientId)).map((resource) => resource.uri);

  if (options.json) {
    writeJson(context, {
      ...summary,
      auth_method: client?.auth.method ?? null,
      binding: client?.binding ?? null,
      scopes: client?.resources ?? {},
      exchange: client ? {
        targets: client.exchange.targets, act_for: client.exchange.actFor, accept_bound_subject_tokens: client.exchange.acceptBoundSubjectTokens,
      } : null,
      introspects,
      state_changed_at: state?.changedAt.toISOString() ?? null,
      recent_events: events.map(eventJson),
    });
    return;
  }
  writeFields(context, [
    ['client', clientId],
    ['owner', summary.owner ?? '- (not configured)'],
    ['purpose', summary.purpose ?? '-'],
    ['state', `${stateLabel(summary)}${state ? ` (since ${formatTime(state.changedAt)})` : ''}`],
    ['authentication', client?.auth.method ?? '-'],
    ['binding', client?.binding ?? '-'],
    ['tokens', `${summary.active_tokens} active, ${summary.total_tokens} issued in all`],
    ['introspects', introspects.join(', ') || '-'],
  ]);
  writeLine(context);
  writeLine(context, 'permitted resources');
  writeTable(context, ['RESOURCE', 'HOW', 'SCOPES'], client ? [
    ...Object.entries(client.resources).map(([uri, scopes]) => [uri, 'client_credentials', scopes.join(' ') || '-']),
    ...Object.entries(client.exchange.targets).map(([uri, scopes]) => [uri, `token exchange${client.exchange.actFor.length ? ` (for ${client.exchange.actFor.join(', ')})` : ''}`, scopes.join(' ') || '-']),
  ] : []);
  writeLine(context);
  writeLine(context, `recent events (last ${options.events ?? 10})`);
  if (events.length === 0) writeLine(context, '(none)');
  for (const event of events) writeLine(context, eventLine(event));
}

function requireKnownClient(context: CommandContext, clientId: string): void {
  if (!configuredClient(context, clientId)) throw new CommandError(`no client ${JSON.stringify(clientId)} in the configuration${notFoundHint(clientId)}`);
}

/** `tether clients suspend <id>`: no new tokens from now on, and every live token (with its lineage) revoked. */
export async function clientsSuspend(context: CommandContext, clientId: string, options: { reason?: string; json?: boolean } = {}): Promise<void> {
  requireKnownClient(context, clientId);
  const { changed, revoked } = await suspendClient(context.knex, clientId, causeOf(context, options.reason ?? 'suspended from the command line'), context.facts);
  if (options.json) {
    writeJson(context, { client_id: clientId, suspended: true, changed, revoked: revoked.map((token) => ({ token_id: token.tokenId, client_id: token.clientId, resource: token.resource })) });
    return;
  }
  writeLine(context, changed ? `suspended ${clientId}: it gets no new tokens` : `${clientId} was already suspended`);
  writeLine(context, `revoked ${revoked.length} live token${revoked.length === 1 ? '' : 's'} (with tokens exchanged from them)`);
  if (revoked.length > 0) writeTable(context, ['TOKEN ID', 'CLIENT', 'RESOURCE'], revoked.map((token) => [token.tokenId, token.clientId, token.resource]));
}

/** `tether clients resume <id>`: the client may obtain tokens again (revoked tokens stay revoked). */
export async function clientsResume(context: CommandContext, clientId: string, options: { reason?: string; json?: boolean } = {}): Promise<void> {
  requireKnownClient(context, clientId);
  const { changed } = await resumeClient(context.knex, clientId, causeOf(context, options.reason ?? 'resumed from the command line'), context.facts);
  if (options.json) writeJson(context, { client_id: clientId, suspended: false, changed });
  else writeLine(context, changed ? `resumed ${clientId}: it may obtain tokens again` : `${clientId} was not suspended`);
}

import { TOKEN_STATES, tokenStateOf, type TokenRecord, type TokenState } from '../ledger/events.js';
import { eventsOfToken, findTokenRecord, listTokens, tokenLineage } from '../ledger/inventory_queries.js';
import { opaqueTokenId } from '../keys/own_tokens.js';
import { revokeTokens, type RevocationSelection, type RevokedToken } from '../ledger/revoke_tokens.js';
import { usesOfToken, type TokenUse } from '../ledger/token_uses.js';
import { notFoundHint } from './command_conventions.js';
import {
  CommandError, UsageError, abbreviate, causeOf, eventJson, eventLine, formatBinding, formatTime, tokenJson, writeFields, writeJson, writeLine, writeTable, type CommandContext,
} from './inventory_output.js';

/** `tether tokens list|show|revoke`: which tokens exist, whose, for which API, and how to kill them. */

export interface TokensListOptions {
  client?: string;
  resource?: string;
  state?: string;
  /** Federation: only tokens whose external identity is of this issuer. */
  issuer?: string;
  limit?: number;
  json?: boolean;
}

function stateOption(state: string | undefined): TokenState | undefined {
  if (state === undefined) return undefined;
  if (!(TOKEN_STATES as string[]).includes(state)) throw new UsageError(`--state must be one of ${TOKEN_STATES.join(', ')} (got ${JSON.stringify(state)})`);
  return state as TokenState;
}

function tokenRow(token: TokenRecord, now: Date): string[] {
  return [
    token.tokenId,
    token.clientId,
    token.resource,
    token.scope.join(' ') || '-',
    formatBinding(token.binding),
    tokenStateOf(token, now),
    formatTime(token.issuedAt),
    formatTime(token.expiresAt),
    formatTime(token.lastUsedAt),
    token.parentTokenId ? abbreviate(token.parentTokenId) : '-',
  ];
}

const TOKEN_HEADERS = ['TOKEN ID', 'CLIENT', 'RESOURCE', 'SCOPE', 'BINDING', 'STATE', 'ISSUED', 'EXPIRES', 'LAST USED', 'PARENT'];

/** `tether tokens list [--client X] [--resource U] [--state active|expired|revoked]`, newest first. */
export async function tokensList(context: CommandContext, options: TokensListOptions = {}): Promise<TokenRecord[]> {
  const tokens = await listTokens(context.knex, {
    clientId: options.client, resource: options.resource, state: stateOption(options.state), externalIssuer: options.issuer, limit: options.limit ?? 100,
  });
  const now = new Date();
  if (options.json) writeJson(context, tokens.map((token) => tokenJson(token, now)));
  else writeTable(context, TOKEN_HEADERS, tokens.map((token) => tokenRow(token, now)), 'no tokens match');
  return tokens;
}

/**
 * The token an operator names: a JWT's `jti` or the ledger's id of an opaque token — or, pasted by
 * mistake, an opaque token itself, which is found by its hash (and never printed back).
 */
async function resolveToken(context: CommandContext, id: string): Promise<TokenRecord> {
  const token = await findTokenRecord(context.knex, id) ?? await findTokenRecord(context.knex, opaqueTokenId(id));
  if (!token) throw new CommandError(`no token with id ${JSON.stringify(id)} in the ledger${notFoundHint(id)}`);
  return token;
}

const useJson = (use: TokenUse) => ({
  resource: use.resource, outcome: use.outcome, reason: use.reason ?? null, count: use.count, first_at: use.firstAt.toISOString(), last_at: use.lastAt.toISOString(),
});

/**
 * `tether tokens show <id>`: fields, binding, lineage (parent and children), last use, the uses APIs
 * reported (docs/use-reports.md) by API, outcome and reason, and every event.
 */
export async function tokensShow(context: CommandContext, id: string, options: { json?: boolean } = {}): Promise<void> {
  const token = await resolveToken(context, id);
  const [lineage, events, uses] = await Promise.all([
    tokenLineage(context.knex, token.tokenId), eventsOfToken(context.knex, token.tokenId), usesOfToken(context.knex, token.tokenId),
  ]);
  const now = new Date();
  if (options.json) {
    writeJson(context, {
      ...tokenJson(token, now),
      ancestors: lineage.ancestors.map((ancestor) => tokenJson(ancestor, now)),
      descendants: lineage.descendants.map((descendant) => ({ ...tokenJson(descendant, now), depth: descendant.depth })),
      uses: uses.map(useJson),
      events: events.map(eventJson),
    });
    return;
  }
  writeFields(context, [
    ['token id', token.tokenId],
    ['state', tokenStateOf(token, now)],
    ['format', token.format === 'opaque' ? 'opaque (id is the SHA-256 of the token\'s id)' : 'jwt'],
    ['client', token.clientId],
    ['subject (sub)', token.subject],
    ['resource (aud)', token.resource],
    ['scope', token.scope.join(' ') || '-'],
    ['binding', formatBinding(token.binding, true)],
    ['issued', formatTime(token.issuedAt)],
    ['expires', formatTime(token.expiresAt)],
    ['revoked', formatTime(token.revokedAt)],
    ['last used', formatTime(token.lastUsedAt)],
    ['act', token.act ? JSON.stringify(token.act) : '-'],
    ['external identity', token.external ? `${token.external.subject} of ${token.external.issuer} (token ${token.external.tokenId})` : '-'],
  ]);
  writeLine(context);
  writeLine(context, 'lineage');
  const lineageRow = (relation: string, other: TokenRecord) => [relation, other.tokenId, other.clientId, other.resource, tokenStateOf(other, now)];
  writeTable(context, ['RELATION', 'TOKEN ID', 'CLIENT', 'RESOURCE', 'STATE'], [
    ...lineage.ancestors.map((ancestor, index) => lineageRow(index === 0 ? 'parent' : `ancestor ${index + 1}`, ancestor)),
    ...lineage.descendants.map((descendant) => lineageRow(descendant.depth === 1 ? 'child' : `descendant ${descendant.depth}`, descendant)),
  ], '(issued directly; nothing exchanged from it)');
  writeLine(context);
  writeLine(context, 'uses (reported by APIs)');
  writeTable(context, ['RESOURCE', 'OUTCOME', 'REASON', 'COUNT', 'FIRST', 'LAST'], uses.map((use) => [
    use.resource, use.outcome, use.reason ?? '-', String(use.count), formatTime(use.firstAt), formatTime(use.lastAt),
  ]), '(no API reported a use of this token)');
  writeLine(context);
  writeLine(context, 'events');
  for (const event of events) writeLine(context, eventLine(event));
}

export interface TokensRevokeOptions {
  client?: string;
  resource?: string;
  reason?: string;
  json?: boolean;
}

interface Selected {
  selection: RevocationSelection;
  /** For the summary line, e.g. "every live token of client worker". */
  what: string;
  /** When nothing was live. */
  nothing: string;
}

async function selectionOf(context: CommandContext, id: string | undefined, options: TokensRevokeOptions): Promise<Selected> {
  const given = [id !== undefined, options.client !== undefined, options.resource !== undefined].filter(Boolean).length;
  if (given !== 1) throw new UsageError('name exactly one of: a token id, --client <id>, --resource <uri>');
  // A name nobody knows is a typo, not "nothing to revoke" (exit code 1, cli_errors.ts).
  if (options.client !== undefined && !await isKnownClient(context, options.client)) {
    throw new CommandError(`no client ${JSON.stringify(options.client)} in the configuration or the ledger: nothing revoked (tether clients list shows them)`);
  }
  if (options.resource !== undefined && !await isKnownResource(context, options.resource)) {
    throw new CommandError(`no resource ${JSON.stringify(options.resource)} in the configuration or the ledger: nothing revoked (resources are exact URIs, as in the configuration)`);
  }
  if (options.client !== undefined) {
    return { selection: { clientId: options.client }, what: `every live token of client ${options.client}`, nothing: `client ${options.client} has no live tokens` };
  }
  if (options.resource !== undefined) {
    return { selection: { resource: options.resource }, what: `every live token for ${options.resource}`, nothing: `no live tokens for ${options.resource}` };
  }
  const token = await resolveToken(context, id!);
  return { selection: { tokenIds: [token.tokenId] }, what: `token ${token.tokenId}`, nothing: `token ${token.tokenId} is already revoked or expired` };
}

async function isKnownClient(context: CommandContext, clientId: string): Promise<boolean> {
  if (context.config.clients.some((client) => client.id === clientId)) return true;
  return (await listTokens(context.knex, { clientId, limit: 1 })).length > 0;
}

async function isKnownResource(context: CommandContext, resource: string): Promise<boolean> {
  if (context.config.resources.some((candidate) => candidate.uri === resource)) return true;
  return (await listTokens(context.knex, { resource, limit: 1 })).length > 0;
}

/**
 * `tether tokens revoke <id>` or in bulk `--client X` / `--resource U`: revokes the selected live
 * tokens and everything exchanged from them, one `token.revoked` event each.
 */
export async function tokensRevoke(context: CommandContext, id: string | undefined, options: TokensRevokeOptions = {}): Promise<RevokedToken[]> {
  const { selection, what, nothing } = await selectionOf(context, id, options);
  const revoked = await revokeTokens(context.knex, selection, causeOf(context, options.reason ?? `revoked from the command line: ${what}`), context.facts);
  if (options.json) {
    writeJson(context, revoked.map((token) => ({
      token_id: token.tokenId, client_id: token.clientId, resource: token.resource, cascade_from: token.cascadeFrom ?? null,
    })));
    return revoked;
  }
  if (revoked.length === 0) {
    writeLine(context, `nothing to revoke: ${nothing}`);
    return revoked;
  }
  writeLine(context, `revoked ${revoked.length} token${revoked.length === 1 ? '' : 's'} (${what}, with tokens exchanged from them)`);
  writeTable(context, ['TOKEN ID', 'CLIENT', 'RESOURCE', 'VIA'], revoked.map((token) => [
    token.tokenId, token.clientId, token.resource, token.cascadeFrom ? `exchanged from ${abbreviate(token.cascadeFrom)}` : 'selected',
  ]));
  return revoked;
}

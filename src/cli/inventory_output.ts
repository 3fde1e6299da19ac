import type { Knex } from 'knex';
import type { TetherConfig } from '../config/schema.js';
import { BINDING_METHODS, type TokenBinding } from '../binding/methods.js';
import type { Cause, LedgerEvent, RequestFacts, TokenRecord } from '../ledger/events.js';
import { tokenStateOf } from '../ledger/events.js';
import { renderTable } from '../text/table.js';

/**
 * What the inventory commands (tokens, clients, ledger) share: the context they run in, and how they
 * print — aligned tables for people, JSON for scripts.
 */

/** Everything a command needs, passed in, so that tests run commands in-process against a real database. */
export interface CommandContext {
  knex: Knex;
  config: TetherConfig;
  out: NodeJS.WritableStream;
  /** Who runs the command, for the ledger's actor column (e.g. `cli:alice@host`). */
  actor: string;
  /** Request facts of the events a command writes. */
  facts: RequestFacts;
}

/** A refusal a command prints as one line (exit code 1), not a stack trace; a usage error (exit code 2). */
export { CommandError, UsageError } from './cli_errors.js';

export function causeOf(context: CommandContext, reason: string): Cause {
  return { actor: context.actor, reason };
}

export function writeLine(context: CommandContext, line = ''): void {
  context.out.write(`${line}\n`);
}

export function writeJson(context: CommandContext, value: unknown): void {
  context.out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One `name  value` line per field, the names padded to the longest. */
export function writeFields(context: CommandContext, fields: readonly (readonly [string, string])[]): void {
  const width = Math.max(...fields.map(([name]) => name.length));
  for (const [name, value] of fields) writeLine(context, `${name.padEnd(width)}  ${value}`);
}

export function writeTable(context: CommandContext, headers: string[], rows: string[][], empty = '(none)'): void {
  writeLine(context, rows.length === 0 ? empty : renderTable(headers, rows));
}

/** `2026-11-22 19:45:42Z`: sortable, unambiguous, no milliseconds. */
export function formatTime(date: Date | undefined): string {
  return date ? `${date.toISOString().slice(0, 19).replace('T', ' ')}Z` : '-';
}

export function abbreviate(value: string, length = 12): string {
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

export function formatBinding(binding: TokenBinding, full = false): string {
  if (binding.method === 'bearer') return 'bearer';
  const name = BINDING_METHODS[binding.method].cnfMember;
  return `${binding.method} ${name}=${full ? binding.thumbprint : abbreviate(binding.thumbprint, 10)}`;
}

/** A token as JSON output shows it (dates as ISO strings, the computed state included). */
export function tokenJson(token: TokenRecord, now = new Date()): Record<string, unknown> {
  return {
    token_id: token.tokenId,
    state: tokenStateOf(token, now),
    format: token.format,
    client_id: token.clientId,
    subject: token.subject,
    resource: token.resource,
    scope: token.scope.join(' '),
    binding: token.binding,
    issued_at: token.issuedAt.toISOString(),
    expires_at: token.expiresAt.toISOString(),
    revoked_at: token.revokedAt?.toISOString() ?? null,
    last_used_at: token.lastUsedAt?.toISOString() ?? null,
    parent_token_id: token.parentTokenId ?? null,
    act: token.act ?? null,
    // Federation (docs/federation.md): who outside Tether the token was issued for.
    external_identity: token.external ? { issuer: token.external.issuer, subject: token.external.subject, token_id: token.external.tokenId } : null,
  };
}

export function eventJson(event: LedgerEvent): Record<string, unknown> {
  return {
    id: event.id,
    occurred_at: event.occurredAt.toISOString(),
    type: event.type,
    client_id: event.clientId ?? null,
    resource: event.resource ?? null,
    scope: event.scope ?? null,
    token_id: event.tokenId ?? null,
    token_format: event.tokenFormat ?? null,
    binding_method: event.bindingMethod ?? null,
    binding_thumbprint: event.bindingThumbprint ?? null,
    expires_at: event.expiresAt?.toISOString() ?? null,
    parent_token_id: event.parentTokenId ?? null,
    actor: event.actor ?? null,
    request_id: event.requestId ?? null,
    source_address: event.sourceAddress ?? null,
    instance_id: event.instanceId ?? null,
    details: event.details ?? null,
  };
}

/** One event on one line: id, time, type, then only the fields it has. */
export function eventLine(event: LedgerEvent): string {
  const fields: [string, string | undefined][] = [
    ['client', event.clientId],
    ['resource', event.resource],
    ['scope', event.scope],
    ['token', event.tokenId && abbreviate(event.tokenId)],
    ['binding', event.bindingMethod],
    ['parent', event.parentTokenId && abbreviate(event.parentTokenId)],
    ['actor', event.actor],
    ['request', event.requestId],
  ];
  const details = event.details ? Object.entries(event.details).map(([key, value]) => `${key}=${JSON.stringify(value)}`) : [];
  return [
    String(event.id).padStart(6),
    formatTime(event.occurredAt),
    event.type.padEnd(18),
    ...fields.filter(([, value]) => value).map(([name, value]) => `${name}=${value}`),
    ...details,
  ].join('  ');
}

import { isSenderConstraint, type TokenBinding } from '../binding/methods.js';
import { scopesOf } from '../oauth/scope.js';
import type { LedgerEvent, LedgerEventType, TokenRecord } from './events.js';

/**
 * Database rows → ledger types. Both drivers (pg and PGlite) return timestamptz as Date and jsonb as
 * parsed JSON; they differ on int8 (pg: string), hence Number() for event ids.
 */

type Row = Record<string, unknown>;

/** The rows of a `knex.raw` result (pg's result shape, which knex-pglite mirrors). */
export function rowsOf(result: unknown): Row[] {
  return ((result as { rows?: Row[] }).rows ?? []);
}

const optional = <T>(value: unknown): T | undefined => (value === null || value === undefined ? undefined : value as T);

function dateOf(value: unknown): Date {
  return value instanceof Date ? value : new Date(value as string);
}

function optionalDate(value: unknown): Date | undefined {
  return value === null || value === undefined ? undefined : dateOf(value);
}

function jsonOf(value: unknown): Record<string, unknown> | undefined {
  if (value === null || value === undefined) return undefined;
  return (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
}

export function bindingOf(method: unknown, thumbprint: unknown): TokenBinding {
  if (isSenderConstraint(method)) return { method, thumbprint: thumbprint as string };
  return { method: 'bearer' };
}

function splitScope(scope: unknown): string[] {
  return typeof scope === 'string' ? scopesOf(scope) : [];
}

export function tokenRecordOf(row: Row): TokenRecord {
  return {
    tokenId: row.token_id as string,
    format: row.format as 'jwt' | 'opaque',
    clientId: row.client_id as string,
    subject: row.subject as string,
    resource: row.resource as string,
    scope: splitScope(row.scope),
    binding: bindingOf(row.binding_method, row.binding_thumbprint),
    issuedAt: dateOf(row.issued_at),
    expiresAt: dateOf(row.expires_at),
    parentTokenId: optional(row.parent_token_id),
    act: jsonOf(row.act),
    external: typeof row.external_issuer === 'string'
      ? { issuer: row.external_issuer, subject: row.external_subject as string, tokenId: row.external_token_id as string }
      : undefined,
    revokedAt: optionalDate(row.revoked_at),
    lastUsedAt: optionalDate(row.last_used_at),
  };
}

export function ledgerEventOf(row: Row): LedgerEvent {
  return {
    id: Number(row.id),
    occurredAt: dateOf(row.occurred_at),
    type: row.type as LedgerEventType,
    clientId: optional(row.client_id),
    resource: optional(row.resource),
    scope: optional(row.scope),
    tokenId: optional(row.token_id),
    tokenFormat: optional(row.token_format),
    bindingMethod: optional(row.binding_method),
    bindingThumbprint: optional(row.binding_thumbprint),
    expiresAt: optionalDate(row.expires_at),
    parentTokenId: optional(row.parent_token_id),
    actor: optional(row.actor),
    requestId: optional(row.request_id),
    sourceAddress: optional(row.source_address),
    instanceId: optional(row.instance_id),
    details: jsonOf(row.details),
  };
}

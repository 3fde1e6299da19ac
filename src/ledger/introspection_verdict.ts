import { cnfOf, tokenTypeOf } from '../binding/methods.js';
import type { TokenRecord } from './events.js';
import type { PresentedToken } from '../keys/own_tokens.js';

/**
 * RFC 7662 §2.2 answer for one presented token, decided from the token itself and its ledger record.
 * Pure: the endpoint (token_status_endpoints.ts) fetches, this decides, the endpoint records.
 */
export type IntrospectionVerdict =
  | { active: true; response: Record<string, unknown> }
  | { active: false; reason: string };

export interface IntrospectionInput {
  presented: PresentedToken;
  /** The ledger's row for the presented token's id, if any. */
  record: TokenRecord | undefined;
  /** The nearest revoked token the presented one was exchanged from, if any (lineage.ts). */
  revokedAncestorId: string | undefined;
  /** The authenticated client asking. */
  callerId: string;
  /** Client ids allowed to introspect tokens of an audience (the resource's `introspectors`). */
  introspectorsOf(resource: string): readonly string[];
  issuer: string;
  now: Date;
}

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

function inactive(reason: string): IntrospectionVerdict {
  return { active: false, reason };
}

export function introspectionVerdict(input: IntrospectionInput): IntrospectionVerdict {
  const { presented, record, callerId } = input;
  if (presented.kind === 'unrecognized') return inactive(presented.reason);
  if (!record) return inactive('no issuance record for this token');
  if (presented.kind === 'jwt' && (presented.claims.client_id !== record.clientId || presented.claims.aud !== record.resource)) {
    return inactive('token claims do not match its issuance record');
  }
  if (record.revokedAt) return inactive('revoked');
  // A token derived from a revoked one is revoked with it (RFC 7009 §2.1), even before its own row says so.
  if (input.revokedAncestorId) return inactive(`derived from revoked token ${input.revokedAncestorId}`);
  if ((presented.kind === 'jwt' && presented.expired) || record.expiresAt.getTime() <= input.now.getTime()) return inactive('expired');
  // RFC 7662 §2.2 / §4: the server decides who may learn about a token; Tether tells only the
  // resource servers registered for the token's audience, everyone else gets active: false.
  if (!input.introspectorsOf(record.resource).includes(callerId)) {
    return inactive(`client ${callerId} may not introspect tokens for ${record.resource}`);
  }
  return { active: true, response: activeResponse(presented, record, input.issuer) };
}

/** RFC 7662 §2.2 members, RFC 8705 §3.2 / RFC 9449 §6.2 `cnf`, RFC 8693 §4.1 `act`. */
function activeResponse(presented: Exclude<PresentedToken, { kind: 'unrecognized' }>, record: TokenRecord, issuer: string): Record<string, unknown> {
  const claims = presented.kind === 'jwt' ? presented.claims : undefined;
  return {
    active: true,
    client_id: record.clientId,
    scope: record.scope.join(' ') || undefined,
    aud: record.resource,
    iss: issuer,
    exp: claims?.exp ?? seconds(record.expiresAt),
    iat: claims?.iat ?? seconds(record.issuedAt),
    sub: claims?.sub ?? record.subject,
    token_type: tokenTypeOf(record.binding),
    cnf: cnfOf(record.binding),
    // An opaque token's id is the token itself: it is not echoed back.
    jti: presented.kind === 'jwt' ? presented.tokenId : undefined,
    act: record.act,
  };
}

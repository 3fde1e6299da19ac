import type { JWTPayload } from 'jose';
import type { Knex } from 'knex';
import { opaqueTokenId, type OwnTokenVerifier, type PresentedToken as OwnToken } from '../../keys/own_tokens.js';
import { PolicyError } from '../../provider/resource_policy.js';
import type { GrantContext } from '../grant_context.js';
import { databaseStep } from '../issuance_steps.js';
import { InvalidPresentedToken, type ActClaim, type ExchangeableToken } from './exchange_policy.js';
import type { PresentedToken } from './parse_request.js';

/**
 * Step 2 of token exchange: a presented subject or actor token → the facts policy decides on, or a
 * refusal. Only tokens Tether issued are exchangeable, and only while they are active:
 *
 *   JWT    — signature by one of Tether's own signing keys (the keys this instance signs and
 *            publishes with; nothing is fetched), `typ` at+jwt (RFC 9068 §2.1), `iss` = our issuer, not expired;
 *   opaque — found by oidc-provider's ClientCredentials model, not expired;
 *   both   — present in the ledger's `issued_tokens`, and neither it nor any token it was exchanged
 *            from revoked (the row exists for every token: issuance commits it before the response).
 */

type Parameter = 'subject_token' | 'actor_token';

/** Resolves a presented token to verified facts; throws InvalidPresentedToken (→ invalid_grant) or invalid_request. */
export async function resolvePresentedToken(grant: GrantContext, verifier: OwnTokenVerifier, presented: PresentedToken, parameter: Parameter): Promise<ExchangeableToken> {
  // The keys may have to be read from the database (a kid this instance has not seen yet): an
  // outage there is 503, not a refusal of a valid token.
  const identified = await databaseStep(() => verifier.identify(presented.value));
  const token = identified.kind === 'opaque'
    ? await readOpaqueAccessToken(grant, presented, parameter)
    : jwtAccessToken(identified, parameter);
  await requireActiveInLedger(grant.knex, token, parameter);
  return token;
}

/**
 * A foreign key (no matching kid), a changed byte, another issuer or typ, an expired token: all are
 * tokens Tether will not exchange, told apart only in the private detail.
 */
function jwtAccessToken(identified: Exclude<OwnToken, { kind: 'opaque' }>, parameter: Parameter): ExchangeableToken {
  if (identified.kind === 'unrecognized') throw new InvalidPresentedToken(parameter, identified.reason);
  if (identified.expired) throw new InvalidPresentedToken(parameter, `JWT not accepted: ${identified.expiredReason}`);
  return tokenFromClaims(identified.claims, parameter);
}

/** The claims of a verified Tether at+jwt → facts (a claim of an unexpected shape is not ours to trust). */
function tokenFromClaims(claims: JWTPayload, parameter: Parameter): ExchangeableToken {
  const malformed = (claim: string): never => {
    throw new InvalidPresentedToken(parameter, `JWT claim ${claim} has an unexpected shape`);
  };
  const audience = Array.isArray(claims.aud) && claims.aud.length === 1 ? claims.aud[0] : claims.aud;
  if (typeof audience !== 'string') malformed('aud');
  if (typeof claims.client_id !== 'string') malformed('client_id');
  if (claims.scope !== undefined && typeof claims.scope !== 'string') malformed('scope');
  return {
    tokenId: claims.jti!,
    format: 'jwt',
    clientId: claims.client_id as string,
    subject: claims.sub!,
    audience: audience as string,
    scopes: scopesOf(claims.scope as string | undefined),
    expiresAt: new Date(claims.exp! * 1000),
    confirmation: confirmationOf(claims.cnf) ?? malformed('cnf'),
    act: claims.act === undefined ? undefined : actClaimOf(claims.act) ?? malformed('act'),
    mayAct: mayActOf(claims.may_act),
  };
}

/**
 * Opaque tokens are looked up through oidc-provider's own model (the adapter), so that exactly the
 * tokens it would introspect as active are exchangeable. A value that looks like a JWT but was
 * declared as one (`…:token-type:jwt`) is never an opaque token: RFC 8693 §2.2.2 invalid_request.
 */
async function readOpaqueAccessToken(grant: GrantContext, presented: PresentedToken, parameter: Parameter): Promise<ExchangeableToken> {
  if (presented.type === 'jwt') {
    throw new PolicyError('invalid_request', `${parameter} is not a JWT`, `${parameter}_type jwt with a value that is not a compact JWS`);
  }
  const token = await databaseStep(() => grant.provider.ClientCredentials.find(presented.value, { ignoreExpiration: true }));
  if (!token) throw new InvalidPresentedToken(parameter, 'opaque token not found');
  if (token.isExpired) throw new InvalidPresentedToken(parameter, `opaque token expired at ${new Date(token.exp! * 1000).toISOString()}`);

  const extra = (token.extra ?? {}) as Record<string, unknown>;
  const audience = Array.isArray(token.aud) ? token.aud[0] : token.aud;
  if (typeof audience !== 'string') throw new InvalidPresentedToken(parameter, 'opaque token without an audience');
  return {
    tokenId: opaqueTokenId(token.jti),
    format: 'opaque',
    clientId: token.clientId!,
    // An exchanged opaque token keeps its subject in `extra` (issuance_steps.ts mintAccessToken).
    subject: typeof extra.sub === 'string' ? extra.sub : token.clientId!,
    audience,
    scopes: scopesOf(token.scope),
    expiresAt: new Date(token.exp! * 1000),
    confirmation: { x5t: token['x5t#S256'], jkt: token.jkt },
    act: extra.act === undefined ? undefined : actClaimOf(extra.act) ?? invalidActClaim(parameter),
    mayAct: mayActOf(extra.may_act),
  };
}

function invalidActClaim(parameter: Parameter): never {
  throw new InvalidPresentedToken(parameter, 'stored act claim has an unexpected shape');
}

function scopesOf(scope: string | undefined): string[] {
  return scope ? scope.split(' ').filter((item) => item !== '') : [];
}

/** RFC 7800 `cnf` with the members Tether writes: RFC 8705 §3.1 `x5t#S256`, RFC 9449 §6.1 `jkt`. */
function confirmationOf(cnf: unknown): ExchangeableToken['confirmation'] | undefined {
  if (cnf === undefined) return {};
  if (typeof cnf !== 'object' || cnf === null) return undefined;
  const { 'x5t#S256': x5t, jkt } = cnf as Record<string, unknown>;
  if ((x5t !== undefined && typeof x5t !== 'string') || (jkt !== undefined && typeof jkt !== 'string')) return undefined;
  return { x5t: x5t as string | undefined, jkt: jkt as string | undefined };
}

/** RFC 8693 §4.1: an object with a string `sub`, possibly nesting the previous `act`. */
export function actClaimOf(value: unknown): ActClaim | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { sub, act } = value as Record<string, unknown>;
  if (typeof sub !== 'string') return undefined;
  if (act === undefined) return { sub };
  const nested = actClaimOf(act);
  return nested ? { sub, act: nested } : undefined;
}

/** RFC 8693 §4.4 `may_act`; anything but an object with a string `sub` is ignored (it grants nothing). */
function mayActOf(value: unknown): { sub?: string } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { sub } = value as Record<string, unknown>;
  return typeof sub === 'string' ? { sub } : undefined;
}

/** Bounds the walk up the exchange lineage; real chains are far shorter (exchange.maxChainDepth). */
const MAX_LINEAGE_HOPS = 64;

/**
 * The token must have its ledger row ("no token without a record"), and neither it nor any ancestor
 * it was exchanged from may be revoked: revoking a token revokes what was derived from it, even if
 * a derived row has not been marked yet.
 */
async function requireActiveInLedger(knex: Knex, token: ExchangeableToken, parameter: Parameter): Promise<void> {
  const lineage = await databaseStep(() => revocationLineage(knex, token.tokenId));
  if (lineage.length === 0) throw new InvalidPresentedToken(parameter, `token ${token.tokenId} has no ledger record`);
  const revoked = lineage.find((row) => row.revoked_at !== null);
  if (revoked) {
    throw new InvalidPresentedToken(parameter, Number(revoked.hops) === 0
      ? `token ${token.tokenId} is revoked`
      : `token ${token.tokenId} descends from revoked token ${revoked.token_id}`);
  }
}

interface LineageRow {
  token_id: string;
  revoked_at: Date | string | null;
  hops: number | string;
}

/** The token's issued_tokens row and its ancestors' (parent_token_id), nearest first. */
function revocationLineage(knex: Knex, tokenId: string): Promise<LineageRow[]> {
  return knex
    .withRecursive('lineage', ['token_id', 'parent_token_id', 'revoked_at', 'hops'], (query) => {
      query
        .select('token_id', 'parent_token_id', 'revoked_at', knex.raw('0'))
        .from('issued_tokens')
        .where('token_id', tokenId)
        .unionAll((ancestors) => {
          ancestors
            .select('parent.token_id', 'parent.parent_token_id', 'parent.revoked_at', knex.raw('lineage.hops + 1'))
            .from('issued_tokens as parent')
            .join('lineage', 'parent.token_id', 'lineage.parent_token_id')
            .where('lineage.hops', '<', MAX_LINEAGE_HOPS);
        });
    })
    .select('token_id', 'revoked_at', 'hops')
    .from('lineage')
    .orderBy('hops')
    // Runs on every exchange: a named statement is parsed and planned once per PostgreSQL connection
    // instead of every time (the SQL text never varies: the id and the hop limit are bindings);
    // docs/benchmarks.md, token exchange. PGlite ignores the name.
    .options({ name: 'tether_revocation_lineage' }) as unknown as Promise<LineageRow[]>;
}

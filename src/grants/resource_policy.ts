import type { ClientConfig, ResourceConfig } from '../config/schema.js';
import { isSenderConstraint, type SenderConstraint } from '../binding/methods.js';
import { Refusal } from '../oauth/refusal.js';
import { scopesOf } from '../oauth/scope.js';
import type { ResourceRegistry } from '../provider/config_snapshot.js';

/**
 * Tether's issuance policy, as pure functions: which one resource a token is for, which scopes it
 * carries, and how it is bound. Each refusal is a Refusal (oauth/refusal.ts): `reason` is private
 * (ledger and logs), `description` is what the client sees.
 */

/**
 * The public `error_description` of each invalid_target refusal (RFC 8707 §2: "invalid, missing,
 * unknown, or malformed"), one per cause so that a client can tell a typo from a missing grant. The
 * caller is an authenticated client and resource URIs are no secret (they are every token's `aud`);
 * which client may use what, and why, stays in the private reason.
 */
export const TARGET_REFUSALS = {
  missing: 'the resource parameter is required',
  several: 'exactly one resource parameter is required',
  unknown: 'the requested resource is not registered at this server',
  notPermitted: 'this client may not obtain tokens for the requested resource',
  bearerNotAllowed: 'the requested resource accepts only sender-constrained tokens, and this client\'s tokens are unbound',
} as const;

/**
 * RFC 8707 §2: the `resource` parameter(s) of a token request → the one registered resource the token
 * is for. Tether mints one audience per token, so more than one value is refused rather than narrowed.
 */
export function selectResource(
  requested: string | string[] | undefined,
  client: ClientConfig,
  grants: Record<string, string[]>,
  registry: ResourceRegistry,
): ResourceConfig {
  const values = requested === undefined ? [] : Array.isArray(requested) ? requested : [requested];
  if (values.length > 1) {
    throw new Refusal('invalid_target', TARGET_REFUSALS.several, `${values.length} resource values requested`);
  }
  const uri = values[0] ?? client.defaultResource;
  if (uri === undefined) {
    throw new Refusal('invalid_target', TARGET_REFUSALS.missing, 'no resource requested and the client has no default resource');
  }
  const resource = registry.get(uri);
  if (!resource) {
    throw new Refusal('invalid_target', TARGET_REFUSALS.unknown, `unknown resource ${JSON.stringify(uri)}`);
  }
  if (!(uri in grants)) {
    throw new Refusal('invalid_target', TARGET_REFUSALS.notPermitted, `resource ${uri} is not permitted for client ${client.id}`);
  }
  return resource;
}

/**
 * RFC 6749 §3.3: the requested scopes, each of which must be granted; none requested → everything
 * granted. Unlike oidc-provider's default, a scope the client may not have is refused, never dropped.
 */
export function selectScopes(requested: string | undefined, granted: readonly string[]): string[] {
  const asked = scopesOf(requested);
  if (asked.length === 0) return [...granted];
  const refused = asked.filter((scope) => !granted.includes(scope));
  if (refused.length > 0) {
    throw new Refusal('invalid_scope', 'requested scope is not allowed', `scopes not granted: ${refused.join(' ')}`);
  }
  return [...new Set(asked)];
}

/** How the token will be sender-constrained. A client configured for binding never gets a bearer token. */
export function selectBinding(client: ClientConfig, resource: ResourceConfig): SenderConstraint | 'bearer' {
  if (isSenderConstraint(client.binding)) return client.binding;
  if (!resource.allowBearer) {
    // The configuration check refuses this combination; keep the rule here too so policy stands alone.
    throw new Refusal('invalid_target', TARGET_REFUSALS.bearerNotAllowed, `resource ${resource.uri} does not allow bearer tokens`);
  }
  return 'bearer';
}

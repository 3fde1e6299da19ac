import { TOKEN_EXCHANGE_GRANT_TYPE as TOKEN_EXCHANGE_GRANT } from '../oauth/token_exchange_urns.js';

/**
 * Label values of Tether's metrics and access log, from a fixed set each: every value a client can
 * send (a client id, a resource, a grant type, an error) is mapped onto the configuration's names or
 * onto a fixed word. A stream of made-up client ids or resources therefore adds no series to
 * Prometheus and no attacker-chosen string to the access log.
 */

/** What a request did not name at all. */
export const NONE = 'none';
/** What a request named that the configuration does not know. */
export const UNKNOWN = 'unknown';
/** Several values where one was expected (RFC 8707 §2: two `resource` values are refused). */
export const MULTIPLE = 'multiple';

/** Grant types Tether serves, by the short name the metrics use. */
const GRANT_NAMES: ReadonlyMap<string, string> = new Map([
  ['client_credentials', 'client_credentials'],
  [TOKEN_EXCHANGE_GRANT, 'token_exchange'],
]);

/**
 * OAuth error codes a Tether endpoint answers with (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1,
 * RFC 8693 §2.2.2, RFC 8707 §2, RFC 9449 §7.1 and §8), and oidc-provider's `server_error`.
 */
const ERROR_CODES: ReadonlySet<string> = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'invalid_dpop_proof', 'use_dpop_nonce', 'invalid_token', 'unsupported_token_type', 'access_denied',
  'temporarily_unavailable', 'server_error',
]);

/** The metrics' name of a grant type: `client_credentials`, `token_exchange`, `none` or `unknown`. */
export function grantLabel(value: unknown): string {
  if (value === undefined || value === null || value === '') return NONE;
  return (typeof value === 'string' && GRANT_NAMES.get(value)) || UNKNOWN;
}

export interface LabelVocabulary {
  /** The client's id if it is configured, `none` if the request named no client, else `unknown`. */
  client(id: unknown): string;
  /** The resource URI if it is configured, `none` / `multiple` / `unknown` otherwise. */
  resource(value: unknown): string;
  /** `client_credentials`, `token_exchange`, `none`, or `unknown`. */
  grant(value: unknown): string;
  /** The OAuth error code, `none` when the answer has none, `other` for a code outside the list. */
  error(value: unknown): string;
}

/** The names the configuration knows (a request's configuration snapshot: they change with a reload). */
export interface KnownNames {
  clients: { has(id: string): boolean };
  resources: { has(uri: string): boolean };
}

export function labelVocabulary(known: KnownNames): LabelVocabulary {
  const { clients, resources } = known;
  const named = (value: unknown, names: { has(name: string): boolean }): string => {
    if (value === undefined || value === null || value === '') return NONE;
    if (Array.isArray(value)) return value.length === 1 ? named(value[0], names) : MULTIPLE;
    return typeof value === 'string' && names.has(value) ? value : UNKNOWN;
  };
  return {
    client: (id) => named(id, clients),
    resource: (value) => named(value, resources),
    grant: grantLabel,
    error: (value) => {
      if (value === undefined || value === null || value === '') return NONE;
      return typeof value === 'string' && ERROR_CODES.has(value) ? value : 'other';
    },
  };
}

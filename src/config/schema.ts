import { isIP } from 'node:net';
import { z } from 'zod';
import { parseSpiffeId } from '../federation/spiffe_id.js';
import { FEDERATION_JWS_ALGORITHMS, JWS_ALGORITHMS } from './jws_algorithms.js';
import { MINIMUM_SECRET_LENGTH } from './encryption_secret.js';
import { DEFAULT_JWKS_MAX_AGE_MS } from 'tether-oauth-resource-server';

/**
 * The shape of `tether.config.yaml`. Every field is validated at start; an error names the path of
 * the bad field (see load_config.ts). Durations are seconds or strings like "5m", "90s", "1h".
 */

const DURATION = /^(\d+)(s|m|h)?$/;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };

const durationSeconds = z
  .union([z.number().int().positive(), z.string().regex(DURATION, 'expected a duration such as 300, "90s", "5m" or "1h"')])
  .transform((value) => {
    if (typeof value === 'number') return value;
    const [, amount, unit] = DURATION.exec(value)!;
    return Number(amount) * UNIT_SECONDS[unit ?? 's']!;
  });

/**
 * Waits on the database, in seconds (fractions allowed): a number of seconds, or a string such as
 * "500ms", "1.5s" or "1m". At least 10 ms, at most an hour. Seconds, like every duration here, so
 * that a parsed configuration parses again to itself.
 */
const TIMEOUT = /^(\d+(?:\.\d+)?)(ms|s|m)?$/;
const UNIT_SECONDS_FRACTIONAL: Record<string, number> = { ms: 0.001, s: 1, m: 60 };

const timeoutSeconds = z
  .union([z.number().positive(), z.string().regex(TIMEOUT, 'expected a duration such as 2, "1.5s", "500ms" or "1m"')])
  .transform((value) => {
    if (typeof value === 'number') return value;
    const [, amount, unit] = TIMEOUT.exec(value)!;
    return Math.round(Number(amount) * UNIT_SECONDS_FRACTIONAL[unit ?? 's']! * 1000) / 1000;
  })
  .refine((seconds) => seconds >= 0.01 && seconds <= 3600, 'expected a duration between 10ms and 1h');

/**
 * DESIGN: every wait on the database is bounded, so that a frozen or saturated database becomes 503 +
 * Retry-After within seconds (docs/ledger.md#outages). Seconds.
 */
export const DATABASE_DEFAULTS = {
  statementTimeout: 5,
  acquireTimeout: 3,
  connectTimeout: 3,
  readinessTimeout: 2,
  queueLimit: 1000,
} as const;

const databaseSchema = z.strictObject({
  /** PostgreSQL statement_timeout, and (plus a second) the client-side wait for any answer. */
  statementTimeout: timeoutSeconds.default(DATABASE_DEFAULTS.statementTimeout),
  /** Longest wait for a pool connection, and for an issuance to be sent to the database. */
  acquireTimeout: timeoutSeconds.default(DATABASE_DEFAULTS.acquireTimeout),
  /** Longest wait for a new PostgreSQL connection to be established. */
  connectTimeout: timeoutSeconds.default(DATABASE_DEFAULTS.connectTimeout),
  /** Longest a /readyz probe waits for the database before answering 503. */
  readinessTimeout: timeoutSeconds.default(DATABASE_DEFAULTS.readinessTimeout),
  /** Issuances waiting to be written at most; one more gets 503 at once. */
  queueLimit: z.number().int().min(1).max(1_000_000).default(DATABASE_DEFAULTS.queueLimit),
}).default(DATABASE_DEFAULTS);

/**
 * What one slow or greedy client may hold on a listener (http/listeners.ts) and send to an endpoint
 * (http/served_routes.ts). Durations are seconds, like every duration here (listeners.ts converts).
 */
export const httpLimitsSchema = z.strictObject({
  /** The whole request head must arrive within this (slowloris); Node's default is 60 s. */
  headersTimeout: timeoutSeconds.default(10),
  /** The whole request, body included; Node's default is 300 s. */
  requestTimeout: timeoutSeconds.default(30),
  /** An idle keep-alive connection is closed after this; above the 60 s idle timeout of common load balancers. */
  keepAliveTimeout: timeoutSeconds.default(65),
  /** The TLS handshake of the HTTPS listener must finish within this; Node's default is 120 s. */
  tlsHandshakeTimeout: timeoutSeconds.default(10),
  /** Bytes of request head (431 beyond); Node's default. */
  maxHeaderSize: z.number().int().min(1024).max(1_048_576).default(16_384),
  /** Requests on one keep-alive connection before it is closed; 0: no limit. */
  maxRequestsPerSocket: z.number().int().min(0).default(0),
  /** Open connections per listener; more are refused at once. */
  maxConnections: z.number().int().min(1).default(1000),
  /** Bytes of request body (413 beyond). oidc-provider itself reads at most 56 KiB, whatever is set. */
  maxBodySize: z.number().int().min(1024).max(57_344).default(32_768),
}).refine((limits) => limits.headersTimeout <= limits.requestTimeout, { message: 'headersTimeout must not exceed requestTimeout', path: ['headersTimeout'] });

export type HttpLimits = z.output<typeof httpLimitsSchema>;
export const DEFAULT_HTTP_LIMITS: HttpLimits = httpLimitsSchema.parse({});

/**
 * The ledger's cost under unauthenticated traffic (ledger/rejection_aggregator.ts): within a window,
 * the first refusal of a kind is written at once and the others are counted into one row.
 */
export const ledgerSchema = z.strictObject({
  rejectionWindow: timeoutSeconds.default(60),
  /** Kinds (source, endpoint, error, client, reason) tracked per window; beyond, per endpoint and error only. */
  rejectionKinds: z.number().int().min(1).max(100_000).default(1000),
});

/** Resource URIs are compared as exact registered strings (RFC 8707 §2); they must be absolute and fragment-free. */
const resourceUri = z.string().refine((value) => {
  const parsed = URL.parse(value);
  return parsed !== null && !value.includes('#');
}, 'expected an absolute URI without a fragment');

/** What `pg` connects with: a postgres(ql):// URL, or socket:/path (pg-connection-string). */
function isPostgresUrl(value: string): boolean {
  const parsed = URL.parse(value);
  return parsed !== null && ['postgres:', 'postgresql:', 'socket:'].includes(parsed.protocol);
}

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'expected a scope token (RFC 6749 §3.3)');

export const resourceSchema = z.strictObject({
  uri: resourceUri,
  scopes: z.array(scopeToken).default([]),
  lifetime: durationSeconds.default(300),
  format: z.enum(['jwt', 'opaque']).default('jwt'),
  /** Legacy escape hatch: unbound (bearer) tokens for this resource. Visible in the ledger. */
  allowBearer: z.boolean().default(false),
  /**
   * Client ids of this API's resource servers: they may introspect its tokens (RFC 7662). Anyone
   * else, the token's own client included, is told `active: false`.
   */
  introspectors: z.array(z.string()).default([]),
  /**
   * Client ids of the services that are this API: the clients a token for it is sent to. Only they
   * may exchange another client's token for this audience under delegation (RFC 8693 §2.1; see
   * docs/token-exchange.md "Who serves an API").
   */
  servedBy: z.array(z.string()).default([]),
});

const jwksSchema = z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) });

const clientAuthSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('client_secret_basic'), secret: z.string().min(16, 'client secrets must be at least 16 characters') }),
  z.strictObject({ method: z.literal('client_secret_post'), secret: z.string().min(16, 'client secrets must be at least 16 characters') }),
  z.strictObject({ method: z.literal('private_key_jwt'), jwks: jwksSchema.optional(), jwksUri: z.url().optional() })
    .refine((auth) => Boolean(auth.jwks) !== Boolean(auth.jwksUri), 'give exactly one of jwks or jwksUri'),
  z.strictObject({
    method: z.literal('tls_client_auth'),
    // RFC 8705 §2.1.2: exactly one subject metadata value is used for matching.
    subjectDn: z.string().optional(),
    sanDns: z.string().optional(),
    sanUri: z.string().optional(),
    sanIp: z.string().optional(),
    sanEmail: z.string().optional(),
    // An X.509-SVID (docs/federation.md): its one URI SAN must be exactly this SPIFFE ID, and it must
    // be issued by the bundle of the ID's trust domain (federation.spiffe), not the client CA.
    spiffeId: z.string().optional(),
  }).refine(
    (auth) => [auth.subjectDn, auth.sanDns, auth.sanUri, auth.sanIp, auth.sanEmail, auth.spiffeId].filter(Boolean).length === 1,
    'give exactly one of subjectDn, sanDns, sanUri, sanIp, sanEmail, spiffeId',
  ),
  z.strictObject({ method: z.literal('self_signed_tls_client_auth'), jwks: jwksSchema }),
  // Workload identity federation (docs/federation.md): a token of a trusted issuer names the
  // client's `federatedIdentities`; the client holds no Tether secret, key or certificate.
  z.strictObject({ method: z.literal('federated') }),
]);

/**
 * Claims a federated token must carry, as a JSON object matched as a subset: every member given must
 * be present with exactly this value (objects recursively), e.g. `{ "kubernetes.io": { "namespace": "payments" } }`.
 */
const requiredClaimsSchema = z.record(z.string(), z.json());

/** An external identity that may authenticate as a client (issuer + exact `sub`, optional claims). */
export const federatedIdentitySchema = z.strictObject({
  issuer: z.string().min(1),
  subject: z.string().min(1),
  claims: requiredClaimsSchema.optional(),
});

export const clientSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._~-]+$/, 'expected letters, digits and . _ ~ -'),
  owner: z.string().min(1),
  purpose: z.string().min(1),
  auth: clientAuthSchema,
  /** With `auth.method: federated`: the external identities that authenticate as this client (RFC 7523 §2.2). */
  federatedIdentities: z.array(federatedIdentitySchema).default([]),
  /** How this client's tokens are sender-constrained (RFC 8705 / RFC 9449). `none` needs resources that allow bearer tokens. */
  binding: z.enum(['mtls', 'dpop', 'none']),
  /** resource URI → scopes this client may obtain there with client_credentials. */
  resources: z.record(resourceUri, z.array(scopeToken)).default({}),
  defaultResource: resourceUri.optional(),
  /** Token exchange (RFC 8693) rules for this client as the requesting party. */
  exchange: z.strictObject({
    /** resource URI → scopes this client may obtain there by exchange (always also ⊆ the subject token's). */
    targets: z.record(resourceUri, z.array(scopeToken)).default({}),
    /**
     * client ids whose tokens this client may present as subject tokens (delegation; `act` is recorded),
     * provided the token is for a resource this client serves (`resources[].servedBy`).
     */
    actFor: z.array(z.string()).default([]),
    /** Allow exchanging a subject token bound to another key (delegation from a token it was handed). */
    acceptBoundSubjectTokens: z.boolean().default(false),
  }).default({ targets: {}, actFor: [], acceptBoundSubjectTokens: false }),
});

/**
 * An issuer URL Tether fetches from or compares with: https, or plain http on a loopback address
 * only (a test or a sidecar on the same host; RFC 8252 §8.3 makes the same exception).
 */
const fetchableUrl = z.url().refine((value) => {
  const url = new URL(value);
  return url.protocol === 'https:' || (url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname));
}, 'expected an https URL (plain http only on 127.0.0.1, [::1] or localhost)');

/** A whole number of seconds, zero allowed (a leeway). */
const leewaySeconds = z.number().int().min(0).max(300);

/**
 * A token-exchange mapping rule (docs/federation.md): an external subject token whose `sub` (exact)
 * and claims (subset) match becomes the Tether principal `principal` ("{sub}" is replaced by the
 * external `sub`), may be presented by the `clients` listed, and gives at most these targets and scopes.
 */
export const mappingRuleSchema = z.strictObject({
  subject: z.string().min(1).optional(),
  claims: requiredClaimsSchema.optional(),
  principal: z.string().min(1),
  clients: z.array(z.string()).min(1),
  targets: z.record(resourceUri, z.array(scopeToken)).refine((targets) => Object.keys(targets).length > 0, 'give at least one target'),
}).refine((rule) => rule.subject !== undefined || Object.keys(rule.claims ?? {}).length > 0, 'give a subject or claims to match (a rule never matches everyone by accident)');

/**
 * A trusted external issuer (docs/federation.md). Its keys come from exactly one place: its
 * discovery document (OpenID Connect Discovery 1.0 §4 or RFC 8414 §3, the default), an explicit
 * `jwksUri`, or a `jwksFile` (air-gapped clusters: `kubectl get --raw /openid/v1/jwks`).
 */
export const trustedIssuerSchema = z.strictObject({
  /** The exact `iss` of its tokens. */
  issuer: z.url(),
  discovery: z.enum(['openid-configuration', 'oauth-authorization-server']).default('openid-configuration'),
  jwksUri: fetchableUrl.optional(),
  jwksFile: z.string().optional(),
  /** PEM bundle of the CAs its https endpoints chain to (e.g. a cluster CA); default: Node's roots. */
  caFile: z.string().optional(),
  /** JWS algorithms its tokens may use (asymmetric only). */
  algorithms: z.array(z.enum(FEDERATION_JWS_ALGORITHMS)).min(1),
  /** The `aud` its tokens must contain; default: Tether's issuer identifier. */
  audience: z.string().min(1).optional(),
  /** A token older than this (by `iat`) is refused, whatever its `exp`. Seconds. */
  maxTokenAge: durationSeconds.default(3600),
  /** Leeway for `exp`, `nbf` and `iat`. Seconds. */
  clockLeeway: leewaySeconds.default(30),
  /** A token with an unknown `kid` makes the keys be fetched again at most this often. Seconds. */
  keyRefetchCooldown: durationSeconds.default(30),
  /** Keys are fetched again after this long even when every `kid` is known. Seconds. */
  keyCacheMaxAge: durationSeconds.default(600),
  /** Longest wait for its discovery document or JWKS; beyond, the request gets 503. Seconds. */
  fetchTimeout: timeoutSeconds.default(3),
  /**
   * Client assertions with a `jti` are single-use (shared database). false: accepted again within
   * their lifetime, as tokens without `jti` are — only for clients with sender-constrained tokens and
   * only if the token lives at most maxTokenAge (for a projected token a workload reads from a file).
   */
  singleUseAssertions: z.boolean().default(true),
  /** Token exchange (RFC 8693): which of its subjects become which Tether principal, for what. */
  subjectTokens: z.array(mappingRuleSchema).default([]),
}).refine((issuer) => !(issuer.jwksUri && issuer.jwksFile), { message: 'give at most one of jwksUri or jwksFile', path: ['jwksFile'] })
  .refine((issuer) => issuer.jwksUri !== undefined || issuer.jwksFile !== undefined || fetchableUrl.safeParse(issuer.issuer).success, {
    message: 'discovery needs an https issuer (or loopback http); give jwksUri or jwksFile otherwise', path: ['issuer'],
  });

export type TrustedIssuerConfig = z.output<typeof trustedIssuerSchema>;
export type MappingRuleConfig = z.output<typeof mappingRuleSchema>;
export type FederatedIdentityConfig = z.output<typeof federatedIdentitySchema>;

/**
 * Signing keys (docs/operations.md#signing-keys). Every instance reads them from the database and
 * learns of a change within seconds; these settings must be the same on every instance.
 */
const signingSchema = z.strictObject({
  algorithm: z.enum(JWS_ALGORITHMS).default('ES256'),
  /** Secret that encrypts private signing keys and server secrets at rest. Overridden by TETHER_KEY_ENCRYPTION_SECRET. */
  encryptionSecret: z.string().min(MINIMUM_SECRET_LENGTH, `use at least ${MINIMUM_SECRET_LENGTH} characters (e.g. openssl rand -base64 32)`).optional(),
  /** `tether start` refuses to run without an encryption secret unless this is true (and then warns at start). */
  allowPlaintextKeys: z.boolean().default(false),
  /**
   * The longest time any verifier of Tether's tokens keeps the JWKS cached. Default: the
   * tether-oauth/resource-server verifier's default (`jwksMaxAgeMs`, also jose's createRemoteJWKSet
   * default). Lower it only when every verifier is configured to cache for less.
   */
  verifierJwksMaxAge: durationSeconds.default(DEFAULT_JWKS_MAX_AGE_MS / 1000),
  /** How long a new key is published before it signs; at least verifierJwksMaxAge (the default). */
  publicationDelay: durationSeconds.optional(),
  /** Scheduled rotation: a new key is staged so that it signs this long after the previous one began. */
  rotateEvery: durationSeconds.optional(),
  /** Safety net behind LISTEN/NOTIFY: every instance re-reads the keys this often. */
  reloadInterval: durationSeconds.default(30),
  /** A token naming an unknown `kid` makes the database be asked again about that kid at most this often. */
  unknownKidCooldown: durationSeconds.default(30),
}).superRefine((signing, ctx) => {
  if (signing.publicationDelay !== undefined && signing.publicationDelay < signing.verifierJwksMaxAge) {
    ctx.addIssue({
      code: 'custom',
      path: ['publicationDelay'],
      message: `a new key must be published at least as long as verifiers cache the JWKS (signing.verifierJwksMaxAge: ${signing.verifierJwksMaxAge} s)`,
    });
  }
  const publicationDelay = signing.publicationDelay ?? signing.verifierJwksMaxAge;
  if (signing.rotateEvery !== undefined && signing.rotateEvery <= publicationDelay) {
    ctx.addIssue({
      code: 'custom',
      path: ['rotateEvery'],
      message: `must be longer than the publication delay (${publicationDelay} s): each key must sign before the next one is staged`,
    });
  }
}).transform((signing) => ({ ...signing, publicationDelay: signing.publicationDelay ?? signing.verifierJwksMaxAge }))
  .prefault({});

/**
 * The admin API (src/admin/): off unless `enabled` (tether start) — `tether dev` turns it on unless
 * it is explicitly `false`. Callers are the listed admin clients, presenting a certificate- or
 * DPoP-bound access token whose audience is `resource`, or in `tether dev` the local credential.
 */
export const adminSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** Where it is served on Tether's listeners. */
  path: z.string()
    .refine((value) => /^(\/[A-Za-z0-9._~-]+)+$/.test(value) && !value.split('/').some((segment) => segment === '.' || segment === '..'), 'expected an absolute path such as /admin')
    // Tether's own endpoints live under these: the admin API must not shadow them.
    .refine((value) => !['token', 'jwks', 'healthz', 'readyz', 'metrics'].includes(value.split('/')[1] ?? ''), 'collides with one of Tether\'s endpoints (/token, /jwks, /healthz, /readyz, /metrics)')
    .default('/admin'),
  /** The admin API's resource URI (a declared resource): the audience of admin tokens. */
  resource: resourceUri.optional(),
  /** Client ids allowed to call it with such a token. */
  clients: z.array(z.string()).default([]),
});

/**
 * Use reports (src/use_reports/, docs/use-reports.md): served when `resource` is set. Each API's own
 * client posts what its verifier saw, with a certificate- or DPoP-bound token whose audience is
 * `resource`, and only for a resource it serves (`servedBy` or `introspectors`).
 */
export const useReportsSchema = z.strictObject({
  /** Where the endpoint is served on Tether's listeners. */
  path: z.string()
    .refine((value) => /^(\/[A-Za-z0-9._~-]+)+$/.test(value) && !value.split('/').some((segment) => segment === '.' || segment === '..'), 'expected an absolute path such as /use-reports')
    .refine((value) => !['token', 'jwks', 'healthz', 'readyz', 'metrics', '.well-known'].includes(value.split('/')[1] ?? ''), 'collides with one of Tether\'s endpoints (/token, /jwks, /healthz, /readyz, /metrics, /.well-known)')
    .default('/use-reports'),
  /** The use-report resource URI (a declared resource): the audience of reporters' tokens. */
  resource: resourceUri.optional(),
  /** How old a reported presentation may be; older ones make the report invalid (400). */
  maxEventAge: durationSeconds.default(86_400),
});

const listenerSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
});

/**
 * Prometheus metrics (observability/metrics.ts, docs/operations.md#metrics). Off unless configured:
 * the series name clients, resources and volumes, which is inventory an outsider should not read.
 * `listener`: `http` or `https` serves `path` on that listener, next to the token endpoint (anyone who
 * reaches the listener can read it); an object is a plain HTTP listener of its own (the recommended
 * production setting: bind it to an address only the scraper reaches).
 */
const metricsSchema = z.strictObject({
  listener: z.union([z.enum(['off', 'http', 'https']), listenerSchema]).default('off'),
  path: z.string().regex(/^\/[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*$/, 'expected an absolute path such as /metrics').default('/metrics'),
});

/**
 * `issuer: auto` (or no issuer): derived from the HTTPS listener, else the HTTP one, so that a port
 * changed by TETHER_HTTPS_PORT moves the issuer with it. An issuer that is set (TETHER_ISSUER or the
 * file) is used as it is: behind a proxy it is the proxy's URL, which no local port tells.
 */
const issuerSetting = z.union([z.literal('auto'), z.url()]).optional();

const configFields = z.strictObject({
  issuer: issuerSetting,
  /** PostgreSQL URL; when absent the embedded PGlite under `dataDir` is used. Overridden by DATABASE_URL. */
  databaseUrl: z.string().refine(isPostgresUrl, 'expected a postgres:// or postgresql:// URL').optional(),
  dataDir: z.string().default('.tether'),
  database: databaseSchema,
  listeners: z.strictObject({
    https: listenerSchema.extend({
      /** PEM files; `tether dev` generates them under dataDir/pki when absent. */
      certFile: z.string().optional(),
      keyFile: z.string().optional(),
      /** CA bundle that tls_client_auth client certificates must chain to. */
      clientCaFile: z.string().optional(),
    }).optional(),
    http: listenerSchema.extend({
      /**
       * Development only: accept client secrets (client_secret_basic/post) on this plain HTTP
       * listener. Otherwise they are refused there (RFC 6749 §2.3.1 requires TLS); `tether start`
       * refuses the option.
       */
      allowClientSecrets: z.boolean().default(false),
    }).optional(),
  }).default({}),
  /**
   * Addresses (IPs or CIDRs) of TLS-terminating proxies: the only peers whose client-certificate
   * header, `X-Forwarded-Proto` and `X-Forwarded-For` are believed.
   */
  trustedProxies: z.array(z.string().refine(isAddressOrCidr, 'expected an IP address or a CIDR block such as 10.0.0.0/8')).default([]),
  clientCertHeader: z.enum(['client-cert', 'x-ssl-client-cert']).default('client-cert'),
  signing: signingSchema,
  dpop: z.strictObject({
    /** RFC 9449 §8: require a server-provided nonce in every proof (clients retry on `use_dpop_nonce`). */
    requireNonce: z.boolean().default(false),
  }).default({ requireNonce: false }),
  exchange: z.strictObject({
    /** RFC 8693 §4.1: how many nested `act` claims a token may carry. */
    maxChainDepth: z.number().int().min(1).max(10).default(3),
  }).default({ maxChainDepth: 3 }),
  http: httpLimitsSchema.prefault({}),
  ledger: ledgerSchema.prefault({}),
  /** Workload identity federation: trusted external issuers (docs/federation.md). */
  federation: z.strictObject({
    issuers: z.array(trustedIssuerSchema).default([]),
    /** SPIFFE trust domains whose X.509-SVIDs authenticate `tls_client_auth` clients with a `spiffeId`. */
    spiffe: z.strictObject({
      trustDomains: z.array(z.strictObject({
        /** SPIFFE ID §2.1: lowercase letters, digits, `.`, `-`, `_`. */
        trustDomain: z.string().regex(/^[a-z0-9._-]+$/, 'a SPIFFE trust domain name (lowercase letters, digits, ".", "-", "_")'),
        /** PEM X.509 authorities of the trust domain (`spire-server bundle show -format pem`), read at start. */
        bundleFile: z.string(),
      })).default([]),
    }).prefault({}),
  }).prefault({}),
  admin: adminSchema.prefault({}),
  useReports: useReportsSchema.prefault({}),
  metrics: metricsSchema.prefault({}),
  resources: z.array(resourceSchema).min(1),
  clients: z.array(clientSchema).min(1),
});

/** Loopback and wildcard addresses are reached as `localhost`, the name the development certificate has. */
function publicHostOf(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (['127.0.0.1', '::1', '0.0.0.0', '::', '', 'localhost'].includes(bare)) return 'localhost';
  return isIP(bare) === 6 ? `[${bare}]` : bare;
}

/** The issuer a configuration without one gets, or why it cannot get one. */
export function derivedIssuerOf(listeners: { https?: { host: string; port: number }; http?: { host: string; port: number } }): { issuer: string } | { problem: string } {
  const [scheme, listener] = listeners.https ? ['https', listeners.https] as const : ['http', listeners.http] as const;
  if (!listener) return { problem: 'no listener to derive it from: set issuer to the URL clients use' };
  if (listener.port === 0) return { problem: `cannot be derived from listeners.${scheme}.port 0 (any free port): set a port, or set issuer` };
  const defaultPort = scheme === 'https' ? 443 : 80;
  return { issuer: `${scheme}://${publicHostOf(listener.host)}${listener.port === defaultPort ? '' : `:${listener.port}`}` };
}

export const configSchema = configFields.transform((config, ctx) => {
  if (config.issuer !== undefined && config.issuer !== 'auto') return { ...config, issuer: config.issuer };
  const derived = derivedIssuerOf(config.listeners);
  if ('problem' in derived) {
    ctx.issues.push({ code: 'custom', path: ['issuer'], message: derived.problem, input: config.issuer });
    return z.NEVER;
  }
  return { ...config, issuer: derived.issuer };
});

export type TetherConfig = z.output<typeof configSchema>;
export type ResourceConfig = z.output<typeof resourceSchema>;
export type ClientConfig = z.output<typeof clientSchema>;
export type ClientAuthConfig = ClientConfig['auth'];
export type DatabaseSettings = TetherConfig['database'];
export type AdminConfig = TetherConfig['admin'];
export type UseReportsConfig = TetherConfig['useReports'];

/** The database waits in milliseconds, as the storage layer takes them. */
export function databaseTimeoutsMs(settings: DatabaseSettings = DATABASE_DEFAULTS): { statementTimeout: number; acquireTimeout: number; connectTimeout: number; readinessTimeout: number } {
  const ms = (seconds: number) => Math.round(seconds * 1000);
  return {
    statementTimeout: ms(settings.statementTimeout),
    acquireTimeout: ms(settings.acquireTimeout),
    connectTimeout: ms(settings.connectTimeout),
    readinessTimeout: ms(settings.readinessTimeout),
  };
}

function isAddressOrCidr(value: string): boolean {
  const [address = '', prefix, extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/** One problem of a configuration: the path of the bad field, and what is wrong with it. */
export type ConfigIssue = { path: (string | number)[]; message: string };
type Issue = ConfigIssue;

/** Cross-references that a per-field schema cannot see: every name a client uses must be declared. */
export function crossReferenceIssues(config: TetherConfig): Issue[] {
  const issues: Issue[] = [];
  const resources = new Map(config.resources.map((resource) => [resource.uri, resource]));
  const clientIds = new Set<string>();

  config.resources.forEach((resource, index) => {
    if (config.resources.findIndex((other) => other.uri === resource.uri) !== index) {
      issues.push({ path: ['resources', index, 'uri'], message: `duplicate resource ${JSON.stringify(resource.uri)}` });
    }
  });

  config.clients.forEach((client, index) => {
    const at = (...rest: (string | number)[]) => ['clients', index, ...rest];
    if (clientIds.has(client.id)) issues.push({ path: at('id'), message: `duplicate client id ${JSON.stringify(client.id)}` });
    clientIds.add(client.id);

    const checkGrants = (grants: Record<string, string[]>, field: string) => {
      for (const [uri, scopes] of Object.entries(grants)) {
        const resource = resources.get(uri);
        if (!resource) {
          issues.push({ path: at(field, uri), message: `unknown resource ${JSON.stringify(uri)}` });
          continue;
        }
        for (const scope of scopes) {
          if (!resource.scopes.includes(scope)) {
            issues.push({ path: at(field, uri), message: `scope ${JSON.stringify(scope)} is not declared by resource ${JSON.stringify(uri)}` });
          }
        }
      }
    };
    checkGrants(client.resources, 'resources');
    checkGrants(client.exchange.targets, 'exchange.targets');

    if (client.defaultResource && !(client.defaultResource in client.resources)) {
      issues.push({ path: at('defaultResource'), message: 'the default resource must be one of the client\'s resources' });
    }
    if (client.binding === 'none') {
      const strict = [...Object.keys(client.resources), ...Object.keys(client.exchange.targets)]
        .filter((uri) => resources.get(uri)?.allowBearer === false);
      if (strict.length > 0) {
        issues.push({ path: at('binding'), message: `binding "none" needs resources that allow bearer tokens; ${strict.join(', ')} does not` });
      }
    }
    if (client.binding === 'mtls' && !['tls_client_auth', 'self_signed_tls_client_auth'].includes(client.auth.method) && !config.listeners.https) {
      issues.push({ path: at('binding'), message: 'binding "mtls" needs an https listener' });
    }
  });

  config.clients.forEach((client, index) => {
    client.exchange.actFor.forEach((id, position) => {
      if (!clientIds.has(id)) issues.push({ path: ['clients', index, 'exchange', 'actFor', position], message: `unknown client ${JSON.stringify(id)}` });
    });
  });
  config.resources.forEach((resource, index) => {
    resource.introspectors.forEach((id, position) => {
      if (!clientIds.has(id)) issues.push({ path: ['resources', index, 'introspectors', position], message: `unknown client ${JSON.stringify(id)}` });
    });
    resource.servedBy.forEach((id, position) => {
      if (!clientIds.has(id)) issues.push({ path: ['resources', index, 'servedBy', position], message: `unknown client ${JSON.stringify(id)}` });
    });
  });
  issues.push(...federationIssues(config, resources, clientIds));
  issues.push(...adminIssues(config, resources, clientIds));
  issues.push(...useReportsIssues(config, resources));
  issues.push(...metricsIssues(config));
  // A delegate exchanges only tokens for an API it serves: actFor without one could never be used.
  config.clients.forEach((client, index) => {
    const serves = config.resources.some((resource) => resource.servedBy.includes(client.id));
    if (client.exchange.actFor.length > 0 && !serves) {
      issues.push({
        path: ['clients', index, 'exchange', 'actFor'],
        message: `client ${JSON.stringify(client.id)} serves no resource: list it in the servedBy of the resource whose tokens it receives (docs/token-exchange.md)`,
      });
    }
  });
  return issues;
}

/** Federation's names: issuers are unique and not Tether itself, and every client, issuer, resource and scope named is declared. */
function federationIssues(config: TetherConfig, resources: ReadonlyMap<string, ResourceConfig>, clientIds: ReadonlySet<string>): Issue[] {
  const issues: Issue[] = [];
  const issuers = new Set<string>();
  config.federation.issuers.forEach((issuer, index) => {
    const at = (...rest: (string | number)[]) => ['federation', 'issuers', index, ...rest];
    if (issuers.has(issuer.issuer)) issues.push({ path: at('issuer'), message: `duplicate issuer ${JSON.stringify(issuer.issuer)}` });
    if (issuer.issuer === config.issuer) issues.push({ path: at('issuer'), message: 'Tether\'s own issuer cannot be a trusted external issuer' });
    issuers.add(issuer.issuer);
    issuer.subjectTokens.forEach((rule, position) => {
      rule.clients.forEach((id, item) => {
        if (!clientIds.has(id)) issues.push({ path: at('subjectTokens', position, 'clients', item), message: `unknown client ${JSON.stringify(id)}` });
      });
      for (const [uri, scopes] of Object.entries(rule.targets)) {
        const resource = resources.get(uri);
        if (!resource) issues.push({ path: at('subjectTokens', position, 'targets', uri), message: `unknown resource ${JSON.stringify(uri)}` });
        for (const scope of resource ? scopes : []) {
          if (!resource!.scopes.includes(scope)) issues.push({ path: at('subjectTokens', position, 'targets', uri), message: `scope ${JSON.stringify(scope)} is not declared by resource ${JSON.stringify(uri)}` });
        }
      }
    });
  });
  const trustDomains = new Set<string>();
  config.federation.spiffe.trustDomains.forEach(({ trustDomain }, index) => {
    if (trustDomains.has(trustDomain)) issues.push({ path: ['federation', 'spiffe', 'trustDomains', index, 'trustDomain'], message: `duplicate trust domain ${JSON.stringify(trustDomain)}` });
    trustDomains.add(trustDomain);
  });
  config.clients.forEach((client, index) => {
    if (client.auth.method === 'tls_client_auth' && client.auth.spiffeId !== undefined) {
      const at = ['clients', index, 'auth', 'spiffeId'];
      const id = parseSpiffeId(client.auth.spiffeId);
      if (!id) issues.push({ path: at, message: 'not a SPIFFE ID (spiffe://trust-domain/path, SPIFFE ID §2)' });
      else if (!trustDomains.has(id.trustDomain)) issues.push({ path: at, message: `trust domain ${JSON.stringify(id.trustDomain)} is not in federation.spiffe.trustDomains` });
    }
  });
  config.clients.forEach((client, index) => {
    const federated = client.auth.method === 'federated';
    if (federated && client.federatedIdentities.length === 0) {
      issues.push({ path: ['clients', index, 'federatedIdentities'], message: 'auth method "federated" needs at least one federated identity' });
    }
    if (!federated && client.federatedIdentities.length > 0) {
      issues.push({ path: ['clients', index, 'auth', 'method'], message: 'federatedIdentities need auth method "federated"' });
    }
    client.federatedIdentities.forEach((identity, position) => {
      if (!issuers.has(identity.issuer)) {
        issues.push({ path: ['clients', index, 'federatedIdentities', position, 'issuer'], message: `unknown issuer ${JSON.stringify(identity.issuer)} (not in federation.issuers)` });
      }
    });
  });
  return issues;
}

/** Admin clients and the admin resource must be declared, and each admin client must be able to get such a token. */
function adminIssues(config: TetherConfig, resources: ReadonlyMap<string, ResourceConfig>, clientIds: ReadonlySet<string>): Issue[] {
  const { admin } = config;
  const issues: Issue[] = [];
  if (admin.resource !== undefined && !resources.has(admin.resource)) {
    issues.push({ path: ['admin', 'resource'], message: `unknown resource ${JSON.stringify(admin.resource)}: declare it under resources` });
  }
  if (admin.clients.length > 0 && admin.resource === undefined) {
    issues.push({ path: ['admin', 'resource'], message: 'admin clients need the admin API\'s resource URI (the audience of their tokens)' });
  }
  admin.clients.forEach((id, position) => {
    if (!clientIds.has(id)) {
      issues.push({ path: ['admin', 'clients', position], message: `unknown client ${JSON.stringify(id)}` });
      return;
    }
    const client = config.clients.find((candidate) => candidate.id === id)!;
    if (admin.resource !== undefined && !(admin.resource in client.resources)) {
      issues.push({ path: ['admin', 'clients', position], message: `client ${JSON.stringify(id)} may not obtain tokens for ${admin.resource}: add it to its resources` });
    }
  });
  return issues;
}

/** The use-report resource is declared, and the endpoint does not take the admin API's path. */
function useReportsIssues(config: TetherConfig, resources: ReadonlyMap<string, ResourceConfig>): Issue[] {
  const { useReports, admin } = config;
  const issues: Issue[] = [];
  if (useReports.resource !== undefined && !resources.has(useReports.resource)) {
    issues.push({ path: ['useReports', 'resource'], message: `unknown resource ${JSON.stringify(useReports.resource)}: declare it under resources` });
  }
  const within = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);
  if (useReports.resource !== undefined && (within(useReports.path, admin.path) || within(admin.path, useReports.path))) {
    issues.push({ path: ['useReports', 'path'], message: `overlaps the admin API's path ${admin.path}` });
  }
  return issues;
}

/** Paths Tether answers itself; metrics served beside them on a shared listener must not shadow one. */
const RESERVED_PATHS = ['/token', '/jwks', '/healthz', '/readyz', '/.well-known'];

/** The metrics listener must exist, and its path must not take one of Tether's own. */
function metricsIssues(config: TetherConfig): Issue[] {
  const { listener, path } = config.metrics;
  if (listener === 'off') return [];
  if (typeof listener === 'string' && !config.listeners[listener]) {
    return [{ path: ['metrics', 'listener'], message: `metrics on the ${listener} listener needs listeners.${listener}` }];
  }
  const shadowed = RESERVED_PATHS.find((reserved) => path === reserved || path.startsWith(`${reserved}/`));
  if (typeof listener === 'string' && shadowed) {
    return [{ path: ['metrics', 'path'], message: `${path} is one of Tether's own paths (${shadowed}); choose another, e.g. /metrics` }];
  }
  return [];
}

/**
 * What `tether start` needs beyond a valid configuration (`tether dev` generates its own CA):
 * `tls_client_auth` (RFC 8705 §2.1) certificates must chain to a CA the operator names, because
 * without one Node would trust its default roots (public CAs, NODE_EXTRA_CA_CERTS) for client
 * certificates.
 */
export function startModeIssues(config: TetherConfig): Issue[] {
  const issues: Issue[] = [];
  if (config.admin.enabled === true && config.admin.clients.length === 0) {
    // tether start has no local credential: only admin clients can call the admin API.
    issues.push({ path: ['admin', 'clients'], message: 'required by tether start when admin.enabled: the clients that may call the admin API' });
  }
  const [first] = certificateClientIds(config.clients);
  if (first !== undefined && !config.listeners.https?.clientCaFile) {
    issues.push({
      path: ['listeners', 'https', 'clientCaFile'],
      message: `required by tether start: client ${JSON.stringify(first)} uses tls_client_auth, whose certificates must chain to a CA named here (public CAs never count)`,
    });
  }
  return issues;
}

/**
 * Clients that authenticate with a CA-issued certificate (RFC 8705 §2.1): the development and test
 * PKIs issue each of them a certificate named by client id. Takes raw configuration too (the harness
 * decides before validating).
 */
export function certificateClientIds(clients: readonly { id: string; auth?: { method?: string; spiffeId?: string } }[]): string[] {
  // An X.509-SVID chains to its trust domain's bundle (federation.spiffe), not to the client CA.
  return clients.filter((client) => client.auth?.method === 'tls_client_auth' && client.auth.spiffeId === undefined).map((client) => client.id);
}

/**
 * The configuration of `tether authz` (docs/gateways.md#configuration): a forward-auth server for
 * one API behind a gateway. Typed and validated like the server's own file; every error names the
 * file and the bad path, and a secret is never shown.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { compileRoutes, FORWARD_AUTH_STYLES, trustedProxyList } from 'tether-oauth-resource-server';
import { ConfigError } from './load_config.js';
import { describeValue, formatPath, type ConfigPath } from './redact.js';

const isAddressOrCidr = (value: string) => {
  try {
    trustedProxyList([value]);
    return true;
  } catch {
    return false;
  }
};

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an absolute http(s) URL' });

const routeSchema = z.strictObject({
  /** One method, a list, or "*" for any. */
  method: z.union([z.string(), z.array(z.string()).min(1)]),
  path: z.string(),
  scopes: z.array(z.string()).default([]),
});

const introspectSchema = z.strictObject({
  /** The API's own client at Tether, listed in the resource's `introspectors`. */
  clientId: z.string().min(1),
  /** client_secret_basic; or certFile + keyFile for tls_client_auth. */
  clientSecret: z.string().min(1).optional(),
  certFile: z.string().optional(),
  keyFile: z.string().optional(),
  /** How long an `active: true` answer is reused for the same token (default 0). */
  cacheTtlMs: z.number().int().min(0).default(0),
}).refine((value) => (value.clientSecret !== undefined) !== (value.certFile !== undefined && value.keyFile !== undefined), {
  error: 'give clientSecret, or certFile and keyFile (not both)',
});

const reportSchema = z.strictObject({
  /** Tether's use-report resource (`useReports.resource` there): the audience of the reporting tokens. */
  resource: z.string().min(1),
  /** The API's own client at Tether, which serves `audience` (servedBy or introspectors) and may get tokens for `resource`. */
  clientId: z.string().min(1),
  /** Its certificate and key: tls_client_auth, certificate-bound reporting tokens. */
  certFile: z.string(),
  keyFile: z.string(),
  /** The use-report endpoint (default: discovered, tether_use_report_endpoint). */
  endpoint: httpUrl.optional(),
  /** How often queued presentations are sent (default 5 000 ms). */
  flushIntervalMs: z.number().int().min(100).optional(),
});

export const authzConfigSchema = z.strictObject({
  /** Tether's issuer identifier (`iss`). */
  issuer: httpUrl,
  /** The API's resource URI at Tether (`aud`). */
  audience: z.string().min(1),
  /** Where clients reach the API through the gateway: the DPoP `htu` is this and the original path. */
  publicBaseUrl: httpUrl,
  /** The gateway's convention: nginx (X-Original-*), forwarded (Traefik, Caddy: X-Forwarded-*), envoy. */
  gateway: z.enum(FORWARD_AUTH_STYLES),
  /** For envoy: the http_service path_prefix. */
  envoyPathPrefix: z.string().optional(),
  listen: z.strictObject({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535) }),
  /** The gateways' addresses (or CIDR ranges); any other caller is refused. */
  trustedGateways: z.array(z.string().refine(isAddressOrCidr, 'expected an IP address or a CIDR block such as 10.0.0.0/8')).min(1),
  /** The header the gateway forwards the client certificate in; without it certificate-bound tokens are refused. */
  clientCertHeader: z.enum(['client-cert', 'x-ssl-client-cert']).optional(),
  /** CA bundle (PEM) of Tether's TLS certificate, for metadata, JWKS and introspection. */
  issuerCaFile: z.string().optional(),
  /** Tether's JWKS URL (default: discovered from the issuer's metadata). */
  jwksUri: httpUrl.optional(),
  /** Accept unbound tokens (only for a resource Tether issues bearer tokens for). */
  allowBearer: z.boolean().default(false),
  /** Revocation by introspection (RFC 7662): a revoked token is refused at once. */
  revocation: z.strictObject({ introspect: introspectSchema }).optional(),
  routes: z.array(routeSchema).min(1),
  /** Use reports (docs/use-reports.md): what the forward-auth server judged, sent to Tether. */
  report: reportSchema.optional(),
});

/** A validated `tether authz` configuration; file paths are absolute. */
export type AuthzConfig = z.infer<typeof authzConfigSchema>;

/** Reads, validates and resolves a configuration file. */
export async function loadAuthzConfig(file: string): Promise<AuthzConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${file}: cannot read the configuration file (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const document = parseDocument(text);
  const [syntax] = document.errors;
  if (syntax) {
    const [start] = syntax.linePos ?? [];
    throw new ConfigError(`${file}: not valid YAML or JSON${start ? ` at line ${start.line}, column ${start.col}` : ''}: ${syntax.code.toLowerCase().replaceAll('_', ' ')}`);
  }
  return resolvePaths(parseAuthzConfig(document.toJS(), file), path.dirname(path.resolve(file)));
}

/** Validates a configuration object; `source` names it in errors. */
export function parseAuthzConfig(raw: unknown, source = 'configuration'): AuthzConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: expected a mapping at the top level`);
  const result = authzConfigSchema.safeParse(raw);
  if (!result.success) {
    throw configErrorOf(source, result.error.issues.map((issue) => ({ path: issue.path as (string | number)[], message: issue.message + shownValue(raw, issue) })));
  }
  const config = result.data;
  const issues: Issue[] = [];
  try {
    compileRoutes(config.routes);
  } catch (error) {
    // The package names the route (`routes[2].path: …`): split its words into path and message.
    const [where, ...rest] = (error as Error).message.split(': ');
    issues.push(rest.length > 0 ? { path: [where!], message: rest.join(': ') } : { path: [], message: where! });
  }
  if (config.gateway === 'envoy' && config.envoyPathPrefix !== undefined && !/^\/.*[^/]$/.test(config.envoyPathPrefix)) {
    issues.push({ path: ['envoyPathPrefix'], message: 'must start with "/" and not end with "/"' });
  }
  if (config.gateway !== 'envoy' && config.envoyPathPrefix !== undefined) issues.push({ path: ['envoyPathPrefix'], message: 'only for gateway: envoy' });
  if (issues.length > 0) throw configErrorOf(source, issues);
  return config;
}

type Issue = { path: (string | number)[]; message: string };

/** One error for every problem, one per line, as the server's configuration errors are worded. */
function configErrorOf(source: string, issues: readonly Issue[]): ConfigError {
  const lines = issues.map((issue) => `${formatPath(issue.path) || '(top level)'}: ${issue.message}`);
  return new ConfigError(lines.length === 1 ? `${source}: ${lines[0]}` : `${source}: ${lines.length} problems\n${lines.map((line) => `  ${line}`).join('\n')}`, lines.map((line) => `${source}: ${line}`));
}

function shownValue(raw: unknown, issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys' || issue.code === 'invalid_type') return '';
  const shown = describeValue(raw, issue.path as ConfigPath);
  return shown === undefined ? '' : ` (got ${shown})`;
}

function resolvePaths(config: AuthzConfig, base: string): AuthzConfig {
  const resolve = (file: string | undefined) => (file === undefined ? undefined : path.resolve(base, file));
  const introspect = config.revocation?.introspect;
  const report = config.report;
  return {
    ...config,
    issuerCaFile: resolve(config.issuerCaFile),
    ...(introspect ? { revocation: { introspect: { ...introspect, certFile: resolve(introspect.certFile), keyFile: resolve(introspect.keyFile) } } } : {}),
    ...(report ? { report: { ...report, certFile: resolve(report.certFile)!, keyFile: resolve(report.keyFile)! } } : {}),
  };
}

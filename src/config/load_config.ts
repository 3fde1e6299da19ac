import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { ConfigError } from './config_error.js';
import { describeValue, formatPath, scrubSecrets, secretValuesOf, type ConfigPath } from './redact.js';
import { configSchema, crossReferenceIssues, type ConfigIssue, type TetherConfig } from './schema.js';

export { ConfigError };

/** One error for all the problems of one source: a single line for one, a list for several. */
function configErrorOf(source: string, problems: string[], secrets: readonly string[]): ConfigError {
  const scrubbed = problems.map((problem) => scrubSecrets(problem, secrets));
  const message = scrubbed.length === 1
    ? `${source}: ${scrubbed[0]}`
    : `${source}: ${scrubbed.length} problems\n${scrubbed.map((problem) => `  ${problem}`).join('\n')}`;
  return new ConfigError(message, scrubbed.map((problem) => `${source}: ${problem}`));
}

/** The error for `issues` of a configuration from `source`, worded as at start (one per line, each naming its path). */
export function configErrorOfIssues(source: string, issues: readonly ConfigIssue[], env: NodeJS.ProcessEnv = process.env): ConfigError {
  return configErrorOf(source, issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`), secretValuesOf(undefined, env));
}

/** Environment variables that override the file, so one file serves several deployments. */
const ENVIRONMENT_OVERRIDES: { variable: string; path: ConfigPath; apply: (raw: Record<string, unknown>, value: string) => void }[] = [
  { variable: 'TETHER_ISSUER', path: ['issuer'], apply: (raw, value) => { raw.issuer = value; } },
  { variable: 'DATABASE_URL', path: ['databaseUrl'], apply: (raw, value) => { raw.databaseUrl = value; } },
  { variable: 'TETHER_DATA_DIR', path: ['dataDir'], apply: (raw, value) => { raw.dataDir = value; } },
  {
    variable: 'TETHER_KEY_ENCRYPTION_SECRET',
    path: ['signing', 'encryptionSecret'],
    apply: (raw, value) => { raw.signing = { ...asObject(raw.signing), encryptionSecret: value }; },
  },
  { variable: 'TETHER_HTTPS_PORT', path: ['listeners', 'https', 'port'], apply: (raw, value) => { setListenerPort(raw, 'https', value); } },
  { variable: 'TETHER_HTTP_PORT', path: ['listeners', 'http', 'port'], apply: (raw, value) => { setListenerPort(raw, 'http', value); } },
  // One file inside a container (0.0.0.0, reachable through published ports) and outside it (loopback).
  { variable: 'TETHER_HTTPS_HOST', path: ['listeners', 'https', 'host'], apply: (raw, value) => { setListenerField(raw, 'https', 'host', value); } },
  { variable: 'TETHER_HTTP_HOST', path: ['listeners', 'http', 'host'], apply: (raw, value) => { setListenerField(raw, 'http', 'host', value); } },
];

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
}

function setListenerPort(raw: Record<string, unknown>, listener: 'https' | 'http', value: string): void {
  // A non-numeric port is left as a string so that validation reports it with its path.
  setListenerField(raw, listener, 'port', /^\d+$/.test(value) ? Number(value) : value);
}

function setListenerField(raw: Record<string, unknown>, listener: 'https' | 'http', field: 'host' | 'port', value: string | number): void {
  const listeners = asObject(raw.listeners);
  listeners[listener] = { ...asObject(listeners[listener]), [field]: value };
  raw.listeners = listeners;
}

/** Reads a YAML (or JSON, which is YAML) configuration file, applies the environment, validates it. */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<TetherConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${file}: cannot read the configuration file (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const config = parseConfig(await parseYamlText(text, file, env), { source: file, env });
  return resolveRelativePaths(config, path.dirname(path.resolve(file)));
}

/**
 * The file's first syntax error by line and column (the parser's later errors mostly follow from
 * it). The parser's own message quotes the offending line, which may be the one holding a secret,
 * so only its error code is shown.
 */
async function parseYamlText(text: string, file: string, env: NodeJS.ProcessEnv): Promise<unknown> {
  // The YAML parser loads with the first file read: the built-in development configuration needs none.
  const { parseDocument } = await import('yaml');
  const document = parseDocument(text);
  const [error] = document.errors;
  if (error) {
    const [start] = error.linePos ?? [];
    const where = start ? ` at line ${start.line}, column ${start.col}` : '';
    throw configErrorOf(file, [`not valid YAML or JSON${where}: ${error.code.toLowerCase().replaceAll('_', ' ')}`], secretValuesOf(undefined, env));
  }
  try {
    return document.toJS();
  } catch (error) {
    // e.g. an alias bomb: its message names the construct, not the content.
    throw new ConfigError(`${file}: not valid YAML or JSON (${(error as Error).name})`);
  }
}

/** Validates a configuration object (from a file or from code, as the test harness does). */
export function parseConfig(raw: unknown, { source = 'configuration', env = {} as NodeJS.ProcessEnv } = {}): TetherConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${source}: expected a mapping at the top level`);
  }
  const withEnvironment = asObject(raw);
  const fromEnvironment: { variable: string; path: ConfigPath }[] = [];
  for (const { variable, path: at, apply } of ENVIRONMENT_OVERRIDES) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    apply(withEnvironment, value);
    fromEnvironment.push({ variable, path: at });
  }
  const secrets = secretValuesOf(withEnvironment, env);
  const setBy = (at: ConfigPath) => {
    const override = fromEnvironment.find(({ path: overridden }) => overridden.every((key, index) => at[index] === key));
    return override ? ` (set by ${override.variable})` : '';
  };

  const result = configSchema.safeParse(withEnvironment);
  if (!result.success) {
    throw configErrorOf(source, result.error.issues.map((issue) => `${describeIssue(issue, withEnvironment)}${setBy(issue.path as ConfigPath)}`), secrets);
  }
  // Cross-references need a well-formed configuration, so they are checked once every field is.
  const crossReferences = crossReferenceIssues(result.data);
  if (crossReferences.length > 0) {
    throw configErrorOf(source, crossReferences.map((issue) => `${formatPath(issue.path)}: ${issue.message}`), secrets);
  }
  return result.data;
}

/** Scalars a value may have been expected to be; a string where a mapping belongs may be a misplaced secret. */
const SCALAR_TYPES = new Set(['string', 'number', 'int', 'boolean', 'bigint']);

/**
 * Whether the value is worth showing: never for an unknown key (its mapping holds its siblings,
 * secrets included: the message names the key), nor for a value given where a mapping or a list belongs.
 */
function showsValue(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'unrecognized_keys') return false;
  if (issue.code === 'invalid_type') return SCALAR_TYPES.has(String(issue.expected));
  return true;
}

/** `path: message (got value)`; secrets are never the value shown (config/redact.ts). */
function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const at = issue.path as ConfigPath;
  const shown = showsValue(issue) ? describeValue(raw, at) : undefined;
  return `${formatPath(at) || '(top level)'}: ${issue.message}${shown === undefined ? '' : ` (got ${shown})`}`;
}

function resolveRelativePaths(config: TetherConfig, base: string): TetherConfig {
  const resolve = (file: string | undefined) => (file === undefined ? undefined : path.resolve(base, file));
  const https = config.listeners.https && {
    ...config.listeners.https,
    certFile: resolve(config.listeners.https.certFile),
    keyFile: resolve(config.listeners.https.keyFile),
    clientCaFile: resolve(config.listeners.https.clientCaFile),
  };
  const issuers = config.federation.issuers.map((issuer) => ({ ...issuer, jwksFile: resolve(issuer.jwksFile), caFile: resolve(issuer.caFile) }));
  const trustDomains = config.federation.spiffe.trustDomains.map((domain) => ({ ...domain, bundleFile: path.resolve(base, domain.bundleFile) }));
  return {
    ...config, dataDir: path.resolve(base, config.dataDir), listeners: { ...config.listeners, https },
    federation: { ...config.federation, issuers, spiffe: { trustDomains } },
  };
}

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { configSchema, crossReferenceIssues, type TetherConfig } from './schema.js';

/** A configuration that cannot be used; `message` names the file, the bad path and the value. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Environment variables that override the file, so one file serves several deployments. */
const ENVIRONMENT_OVERRIDES: { variable: string; apply: (raw: Record<string, unknown>, value: string) => void }[] = [
  { variable: 'TETHER_ISSUER', apply: (raw, value) => { raw.issuer = value; } },
  { variable: 'DATABASE_URL', apply: (raw, value) => { raw.databaseUrl = value; } },
  { variable: 'TETHER_DATA_DIR', apply: (raw, value) => { raw.dataDir = value; } },
  { variable: 'TETHER_KEY_ENCRYPTION_SECRET', apply: (raw, value) => { raw.signing = { ...asObject(raw.signing), encryptionSecret: value }; } },
  { variable: 'TETHER_HTTPS_PORT', apply: (raw, value) => { setListenerPort(raw, 'https', value); } },
  { variable: 'TETHER_HTTP_PORT', apply: (raw, value) => { setListenerPort(raw, 'http', value); } },
  // One file inside a container (0.0.0.0, reachable through published ports) and outside it (loopback).
  { variable: 'TETHER_HTTPS_HOST', apply: (raw, value) => { setListenerField(raw, 'https', 'host', value); } },
  { variable: 'TETHER_HTTP_HOST', apply: (raw, value) => { setListenerField(raw, 'http', 'host', value); } },
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
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` at line ${error.linePos[0].line}` : '';
    throw new ConfigError(`${file}: not valid YAML or JSON${where}`);
  }
  const config = parseConfig(raw, { source: file, env });
  return resolveRelativePaths(config, path.dirname(path.resolve(file)));
}

/** Validates a configuration object (from a file or from code, as the test harness does). */
export function parseConfig(raw: unknown, { source = 'configuration', env = {} as NodeJS.ProcessEnv } = {}): TetherConfig {
  const withEnvironment = asObject(raw);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${source}: expected a mapping at the top level`);
  }
  for (const { variable, apply } of ENVIRONMENT_OVERRIDES) {
    const value = env[variable];
    if (value !== undefined && value !== '') apply(withEnvironment, value);
  }
  const result = configSchema.safeParse(withEnvironment);
  if (!result.success) {
    throw new ConfigError(`${source}: ${describeIssue(result.error.issues[0]!, withEnvironment)}`);
  }
  const [crossReference] = crossReferenceIssues(result.data);
  if (crossReference) {
    throw new ConfigError(`${source}: ${formatPath(crossReference.path)}: ${crossReference.message}`);
  }
  return result.data;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const pathText = formatPath(issue.path as (string | number)[]);
  const value = valueAt(raw, issue.path as (string | number)[]);
  const shown = value === undefined ? '' : ` (got ${JSON.stringify(value)?.slice(0, 80)})`;
  return `${pathText || '(top level)'}: ${issue.message}${shown}`;
}

function valueAt(raw: unknown, at: (string | number)[]): unknown {
  let current: unknown = raw;
  for (const key of at) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  // Secrets never appear in error messages.
  return at.some((key) => typeof key === 'string' && /secret/i.test(key)) ? undefined : current;
}

function formatPath(at: (string | number)[]): string {
  return at.reduce<string>((text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${key}` : key), '');
}

function resolveRelativePaths(config: TetherConfig, base: string): TetherConfig {
  const resolve = (file: string | undefined) => (file === undefined ? undefined : path.resolve(base, file));
  const https = config.listeners.https && {
    ...config.listeners.https,
    certFile: resolve(config.listeners.https.certFile),
    keyFile: resolve(config.listeners.https.keyFile),
    clientCaFile: resolve(config.listeners.https.clientCaFile),
  };
  return { ...config, dataDir: path.resolve(base, config.dataDir), listeners: { ...config.listeners, https } };
}

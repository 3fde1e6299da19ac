import path from 'node:path';
import type { TetherConfig } from '../config/schema.js';
import { DatabaseInUseError } from '../storage/directory_lock.js';
import { OperationalError } from './cli_errors.js';
import { commandLineOf, describeProcess, listeningProcess } from './port_owner.js';

/**
 * Errors of the machine a command runs on, turned into one line that says what happened and what
 * to do: which port is taken and by whom, which setting names the database that does not answer.
 */

/** Where the configuration came from, for "change it in …": a file, or the built-in development one. */
export type ConfigSource = string | undefined;

const PORT_VARIABLES = { https: 'TETHER_HTTPS_PORT', http: 'TETHER_HTTP_PORT' } as const;

/** `EADDRINUSE` on a listener: the port, the process holding it when the machine says, and how to pick another. */
export function portInUseError(kind: 'https' | 'http', listener: { host: string; port: number }, source: ConfigSource, cause: unknown): OperationalError {
  const owner = listeningProcess(listener.port);
  const variable = PORT_VARIABLES[kind];
  const field = `listeners.${kind}.port`;
  const where = source ? `${field} in ${source}` : `the built-in development configuration's ${field}`;
  return new OperationalError(
    `cannot listen on ${listener.host}:${listener.port} (${kind}): the port is in use${owner ? ` by ${describeProcess(owner)}` : ''}; ` +
      `stop ${owner ? 'that process' : 'what uses it'}, or choose another port with ${variable}=<port> (or ${where}); ` +
      'an issuer derived from the port follows it',
    { cause },
  );
}

export function isAddressInUse(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
}

/** Socket and name-resolution failures, and PostgreSQL refusing the connection itself. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'ENOENT']);
/** PostgreSQL: invalid_password, invalid_authorization_specification, invalid_catalog_name, cannot_connect_now, too_many_connections. */
const CONNECTION_SQLSTATES = new Set(['28P01', '28000', '3D000', '57P03', '53300']);

/** Why a connection to PostgreSQL failed, when it is a connection failure at all. */
export function connectionFailureOf(error: unknown): string | undefined {
  const candidates = [error, ...((error as AggregateError | undefined)?.errors ?? [])];
  for (const candidate of candidates) {
    const { code, message, name } = (candidate ?? {}) as { code?: string; message?: string; name?: string };
    if (code && (UNREACHABLE_CODES.has(code) || CONNECTION_SQLSTATES.has(code))) return code === '3D000' || code.startsWith('28') ? `${message} (${code})` : code;
    if (name === 'KnexTimeoutError' || /connection timeout|timeout expired/i.test(message ?? '')) return 'no connection within the connect timeout';
  }
  return undefined;
}

/** `postgres://user:***@host:5432/db`: the URL without its password. */
export function redactedUrl(url: string): string {
  const parsed = URL.parse(url);
  if (!parsed) return '(the configured URL)';
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/**
 * A database that cannot be reached or opened, explained: the URL (without its password) and where
 * it was set, or the embedded database's directory and who holds it. Other errors are returned as
 * they are.
 */
export function explainDatabaseError(error: unknown, config: TetherConfig, source: ConfigSource, env: NodeJS.ProcessEnv = process.env): unknown {
  if (error instanceof DatabaseInUseError) return databaseInUse(error);
  if (!config.databaseUrl) return error;
  const reason = connectionFailureOf(error);
  if (reason === undefined) return error;
  const setBy = env.DATABASE_URL ? 'DATABASE_URL' : `databaseUrl in ${source ?? 'the configuration'}`;
  return new OperationalError(
    `cannot connect to the database at ${redactedUrl(config.databaseUrl)} (${reason}): is PostgreSQL running there and does the URL name it? ` +
      `It is set by ${setBy}${env.DATABASE_URL ? '' : ' (DATABASE_URL overrides it)'}; unset DATABASE_URL to use the embedded database (tether dev)`,
    { cause: error },
  );
}

function databaseInUse(error: DatabaseInUseError): OperationalError {
  const holder = describeProcess({ pid: error.holderPid, command: commandLineOf(error.holderPid) });
  const directory = path.relative(process.cwd(), error.directory) || error.directory;
  return new OperationalError(
    `the embedded database ${directory} is in use by ${holder}: one process at a time can open it. ` +
      'Stop that process (Ctrl-C where tether dev runs) and run this again, or run Tether on PostgreSQL (DATABASE_URL) to use these commands while it runs; ' +
      `if no such process exists, delete ${error.lockFile}`,
    { cause: error },
  );
}

/** Runs `work`, explaining a failure to reach or open the configured database. */
export async function explainingDatabaseErrors<T>(config: TetherConfig, source: ConfigSource, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw explainDatabaseError(error, config, source);
  }
}

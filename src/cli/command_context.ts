import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { TetherConfig } from '../config/schema.js';
import type { DevCredential } from '../admin/dev_credential.js';
import { migrateToLatest } from '../storage/migrate.js';
import { callRunningServer, runningDevServer, type RemoteRequest } from './admin_remote.js';
import { CommandError } from './cli_errors.js';
import { writeJsonTo } from './command_conventions.js';
import type { CommandContext } from './inventory_output.js';
import type { KeysContext, WithDatabase } from './keys_commands.js';
import { loadDevConfig, loadProductionConfig, openConfiguredDatabase } from './run_server.js';
import { explainDatabaseError, explainingDatabaseErrors } from './server_errors.js';

/**
 * Where the commands that work on Tether's data run: on the configured database, or — when a
 * running `tether dev` holds its embedded database — through that server's admin API
 * (cli/admin_remote.ts). program.ts and inventory_commands.ts load this module only when such a
 * command runs.
 */

export type ConfigResolver = (configFile: string | undefined) => Promise<TetherConfig>;

/** Loads the configuration a command names: `--config`, else ./tether.config.yaml, else the dev defaults. */
export async function configForCommand(configFile: string | undefined): Promise<TetherConfig> {
  return process.env.DATABASE_URL && configFile ? loadProductionConfig(configFile) : loadDevConfig(configFile);
}

/** Runs `work` on the configured database, migrated, and closes it afterwards. */
export const withDatabase: WithDatabase = async (configFile, work) => {
  const config = await configForCommand(configFile);
  const database = await explainingDatabaseErrors(config, configFile, () => openConfiguredDatabase(config));
  try {
    await explainingDatabaseErrors(config, configFile, () => migrateToLatest(database.knex));
    return await work(database.knex, config);
  } finally {
    await database.close();
  }
};

/** `tether migrate`: applies the migrations and says which. */
export async function migrate(options: { config?: string; json?: boolean }, out: NodeJS.WritableStream): Promise<void> {
  const config = await configForCommand(options.config);
  const database = await explainingDatabaseErrors(config, options.config, () => openConfiguredDatabase(config));
  try {
    const { applied } = await explainingDatabaseErrors(config, options.config, () => migrateToLatest(database.knex));
    if (options.json) writeJsonTo(out, { applied, up_to_date: true });
    else out.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
  } finally {
    await database.close();
  }
}

/**
 * `tether keys …` on the configured database, or through the admin API of the running `tether dev`
 * that holds its embedded database (docs/admin.md#the-cli-next-to-a-running-tether-dev).
 */
export async function runKeysCommand(
  configFile: string | undefined, work: (context: KeysContext) => Promise<void>, remote: RemoteRequest, out: NodeJS.WritableStream,
): Promise<void> {
  const server = await runningDevServer(await configForCommand(configFile));
  if (server) return sendToRunningServer(server, remote, out);
  return withDatabase(configFile, (knex, config) => work({ knex, config, out }));
}

/** `cli:<user>@<host>`, the ledger's actor for changes made from the command line. */
export function commandLineActor(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): keep $USER.
  }
  return `cli:${user}@${hostname()}`;
}

/** PostgreSQL's "undefined_table": the schema was never migrated. */
const UNDEFINED_TABLE = '42P01';

/**
 * Runs an inventory command on the configured database — or, when a running `tether dev` holds its
 * embedded database, sends `remote` to that server's admin API (cli/admin_remote.ts).
 */
export async function withContext(
  configFor: ConfigResolver, configFile: string | undefined, out: NodeJS.WritableStream, run: (context: CommandContext) => Promise<unknown>, remote?: RemoteRequest,
): Promise<void> {
  const config = await configFor(configFile);
  const server = remote ? await runningDevServer(config) : undefined;
  if (server && remote) {
    await sendToRunningServer(server, remote, out);
    return;
  }
  const database = await openConfiguredDatabase(config).catch((error: unknown) => { throw explainDatabaseError(error, config, configFile); });
  const context: CommandContext = {
    knex: database.knex,
    config,
    out,
    actor: commandLineActor(),
    facts: { requestId: `cli-${randomUUID()}`, sourceAddress: undefined, instanceId: `cli@${hostname()}` },
  };
  try {
    await run(context);
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE) throw new CommandError('the database has no ledger yet; run `tether migrate` first');
    throw explainDatabaseError(error, config, configFile);
  } finally {
    await database.close();
  }
}

/** Sends a command to a running `tether dev`; Ctrl-C ends a followed stream. */
export async function sendToRunningServer(server: DevCredential, remote: RemoteRequest, out: NodeJS.WritableStream): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    await callRunningServer(server, remote, commandLineActor(), { out, err: process.stderr, signal: stop.signal });
  } finally {
    process.off('SIGINT', onSignal);
  }
}

import { Command, CommanderError } from 'commander';
import type { Logger } from 'pino';
import { commanderExitCode, describeFailure, EXIT, type ExitCode } from './cli_errors.js';
import { everyCommand, jsonOption, PROCESS_IO, writeJsonTo, type CliIo } from './command_conventions.js';
import { createLogger } from './logger.js';
import { stopOnSignals } from './graceful_stop.js';
import { explainingDatabaseErrors } from './server_errors.js';
import { routeProcessWarnings } from '../observability/library_logs.js';
import { loadDevConfig, loadProductionConfig, openConfiguredDatabase, runServer, type RunningServer } from './run_server.js';
import { migrateToLatest } from '../storage/migrate.js';
import { runningDevServer } from './admin_remote.js';
import { registerKeysCommands, type KeysRunner, type WithDatabase } from './keys_commands.js';
import { registerInventoryCommands, sendToRunningServer } from './inventory_commands.js';
import { registerProbeCommand } from './probe_command.js';
import { registerHealthCommand } from './health_command.js';
import { registerAuthzCommand } from './authz_command.js';
import { registerPkiCommands } from './pki_command.js';
import { packageVersion } from './package_version.js';

/** Loads the configuration a command names: `--config`, else ./tether.config.yaml, else the dev defaults. */
export async function configForCommand(configFile: string | undefined) {
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

/**
 * `tether keys …` on the configured database, or through the admin API of the running `tether dev`
 * that holds its embedded database (docs/admin.md#the-cli-next-to-a-running-tether-dev).
 */
function keysRunner(out: NodeJS.WritableStream): KeysRunner {
  return async (configFile, work, remote) => {
    const server = await runningDevServer(await configForCommand(configFile));
    if (server) return sendToRunningServer(server, remote, out);
    return withDatabase(configFile, (knex, config) => work({ knex, config, out }));
  };
}

/**
 * Runs the server `start` resolves to with its signals: SIGTERM / SIGINT stop gracefully; SIGHUP
 * reloads the configuration file (docs/operations.md#configuration-reload). Reloads run one at a
 * time; signals that arrive during one ask for one more, not one each. A SIGHUP that arrives while
 * the server is still starting is kept for when it runs (the file may have changed after it was read),
 * rather than ending the process as Node's default would. What it says goes to the server's log, as
 * JSON like every other line there.
 */
async function serveWithSignals(logger: Logger, start: () => Promise<RunningServer>): Promise<void> {
  let server: RunningServer | undefined;
  // Set once the server runs; a SIGHUP during start-up reads it before then.
  const stopSignals: { current?: { stopping(): boolean } } = {};
  let reloading: Promise<unknown> | undefined;
  let again = false;
  const onReload = () => {
    if (stopSignals.current?.stopping()) return;
    if (reloading || !server) {
      again = true;
      return;
    }
    const { reload } = server;
    reloading = (async () => {
      do {
        again = false;
        await reload();
      } while (again && !stopSignals.current?.stopping());
      reloading = undefined;
    })();
  };
  process.on('SIGHUP', onReload);
  try {
    server = await start();
  } catch (error) {
    process.off('SIGHUP', onReload);
    throw error;
  }
  const { stop } = server;
  if (again) onReload();
  // A reload under way finishes first: the database it may be writing to closes after it.
  stopSignals.current = stopOnSignals(logger, 'requests', () => Promise.resolve(reloading).then(stop));
}

/** The `tether` command line; `io` is where every command prints (tests pass their own). */
export function buildProgram(io: CliIo = PROCESS_IO): Command {
  const program = new Command('tether')
    .description('OAuth 2.0 authorization server: every access token bound to one API and one client key')
    .version(packageVersion(), '-V, --version', 'print the version of tether-oauth')
    .option('--debug', 'on an error, print its stack trace too (also TETHER_DEBUG=1)')
    .showHelpAfterError();

  program.command('dev')
    .description('run with the embedded database and a generated development PKI')
    .option('-c, --config <file>', 'configuration file (default: ./tether.config.yaml, else the built-in development configuration)')
    .action(async (options: { config?: string }) => {
      const logger = createLogger();
      routeProcessWarnings(logger);
      await serveWithSignals(logger, () => runServer({ mode: 'dev', configFile: options.config, logger }));
    });

  program.command('start')
    .description('production mode: needs a configuration file and DATABASE_URL; generates nothing')
    .requiredOption('-c, --config <file>', 'configuration file')
    .action(async (options: { config: string }) => {
      const logger = createLogger();
      routeProcessWarnings(logger);
      await serveWithSignals(logger, () => runServer({ mode: 'start', configFile: options.config, logger }));
    });

  program.command('migrate')
    .description('apply database migrations and exit')
    .option('-c, --config <file>', 'configuration file')
    .addOption(jsonOption())
    .action(async (options: { config?: string; json?: boolean }) => {
      const config = await configForCommand(options.config);
      const database = await explainingDatabaseErrors(config, options.config, () => openConfiguredDatabase(config));
      try {
        const { applied } = await explainingDatabaseErrors(config, options.config, () => migrateToLatest(database.knex));
        if (options.json) writeJsonTo(io.out, { applied, up_to_date: true });
        else io.out.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
      } finally {
        await database.close();
      }
    });

  registerKeysCommands(program, keysRunner(io.out));
  registerInventoryCommands(program, configForCommand, io.out);
  registerProbeCommand(program, io.out, io.err);
  registerPkiCommands(program, io.out, io.err);
  registerHealthCommand(program, io.out);
  registerAuthzCommand(program, io);

  // Commands added with addCommand inherit nothing: every one reports usage errors the same way.
  for (const command of everyCommand(program)) {
    command.exitOverride().configureOutput({ writeOut: (text) => io.out.write(text), writeErr: (text) => io.err.write(text) });
  }
  return program;
}

/**
 * Runs one command line to its end and returns its exit code (cli_errors.ts EXIT): a known error is
 * one line on stderr, nothing half-started; `--debug` (or TETHER_DEBUG=1) adds the stack.
 * `tether dev` and `tether start` return once they listen, and keep running.
 */
export async function runCli(argv: string[], io: CliIo = PROCESS_IO, env: NodeJS.ProcessEnv = process.env): Promise<ExitCode | number> {
  const program = buildProgram(io);
  // A code a previous command of this process left (tests run many) is not this command's.
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? EXIT.done);
  } catch (error) {
    // Commander printed its own message (or the help, or the version) already.
    if (error instanceof CommanderError) return commanderExitCode(error);
    const debug = Boolean(program.opts<{ debug?: boolean }>().debug) || ['1', 'true'].includes(env.TETHER_DEBUG ?? '');
    const { lines, exitCode } = describeFailure(error, debug);
    // "tether: " once: the lines after the first belong to it (every mistake of a configuration, a stack).
    io.err.write(lines.map((line, index) => `${index === 0 ? 'tether: ' : ''}${line}\n`).join(''));
    return exitCode;
  }
}

/** The `tether` executable. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await runCli(argv);
}

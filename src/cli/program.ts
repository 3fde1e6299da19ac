import { Command } from 'commander';
import { ConfigError } from '../config/load_config.js';
import type { Logger } from 'pino';
import { createLogger } from './logger.js';
import { routeProcessWarnings } from '../observability/library_logs.js';
import { loadDevConfig, loadProductionConfig, openConfiguredDatabase, runServer, type RunningServer } from './run_server.js';
import { migrateToLatest } from '../storage/migrate.js';
import { registerKeysCommands, type WithDatabase } from './keys_commands.js';
import { registerInventoryCommands } from './inventory_commands.js';
import { registerProbeCommand } from './probe_command.js';
import { registerHealthCommand } from './health_command.js';
import { registerPkiCommands } from './pki_command.js';
import { packageVersion } from './package_version.js';

/** Loads the configuration a command names: `--config`, else ./tether.config.yaml, else the dev defaults. */
export async function configForCommand(configFile: string | undefined) {
  return process.env.DATABASE_URL && configFile ? loadProductionConfig(configFile) : loadDevConfig(configFile);
}

/** Runs `work` on the configured database, migrated, and closes it afterwards. */
export const withDatabase: WithDatabase = async (configFile, work) => {
  const config = await configForCommand(configFile);
  const database = await openConfiguredDatabase(config);
  try {
    await migrateToLatest(database.knex);
    return await work(database.knex, config);
  } finally {
    await database.close();
  }
};

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
  let stopping = false;
  let reloading: Promise<unknown> | undefined;
  let again = false;
  const onReload = () => {
    if (stopping) return;
    if (reloading || !server) {
      again = true;
      return;
    }
    const { reload } = server;
    reloading = (async () => {
      do {
        again = false;
        await reload();
      } while (again && !stopping);
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
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `${signal}: finishing in-flight requests`);
    // A reload under way finishes first: the database it may be writing to closes after it.
    Promise.resolve(reloading).then(stop).then(() => {
      logger.info({ signal }, 'stopped');
      logger.flush();
      process.exit(0);
    }, (error: unknown) => {
      logger.error({ err: error, signal }, 'error while stopping');
      logger.flush();
      process.exit(1);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/** The `tether` command line. */
export function buildProgram(): Command {
  const program = new Command('tether')
    .description('OAuth 2.0 authorization server: every access token bound to one API and one client key')
    .version(packageVersion(), '-V, --version', 'print the version of tether-oauth')
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
    .action(async (options: { config?: string }) => {
      const config = await configForCommand(options.config);
      const database = await openConfiguredDatabase(config);
      try {
        const { applied } = await migrateToLatest(database.knex);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'already up to date\n');
      } finally {
        await database.close();
      }
    });

  registerKeysCommands(program, withDatabase);
  registerInventoryCommands(program, configForCommand);
  registerProbeCommand(program);
  registerPkiCommands(program);
  registerHealthCommand(program);

  return program;
}

/** Runs the CLI; a configuration error is one clear line and exit code 2, nothing half-started. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`tether: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`tether: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  }
}

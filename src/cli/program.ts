import { Command, CommanderError } from 'commander';
import { commanderExitCode, describeFailure, EXIT, type ExitCode } from './cli_errors.js';
import { everyCommand, jsonOption, PROCESS_IO, type CliIo } from './command_conventions.js';
import type { ConfigResolver } from './command_context.js';
import { registerKeysCommands, type KeysRunner } from './keys_commands.js';
import { registerInventoryCommands } from './inventory_commands.js';
import { registerProbeCommand } from './probe_command.js';
import { registerHealthCommand } from './health_command.js';
import { registerAuthzCommand } from './authz_command.js';
import { registerPkiCommands } from './pki_command.js';
import { packageVersion } from './package_version.js';

/*
 * Every command is registered here with its options and help; what it does is loaded only when it
 * runs (a dynamic import in its action, cached by Node like any module). `tether --help` loads
 * none of it, and `tether dev` loads the server and nothing of the other commands.
 */

/** Where the commands that work on Tether's data run (on the database or through a running `tether dev`). */
const commandContext = () => import('./command_context.js');

const configForCommand: ConfigResolver = async (configFile) => (await commandContext()).configForCommand(configFile);

/** `tether keys …` on the configured database, or through the running `tether dev` that holds it. */
function keysRunner(out: NodeJS.WritableStream): KeysRunner {
  return async (configFile, work, remote) => (await commandContext()).runKeysCommand(configFile, work, remote, out);
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
    .action(async (options: { config?: string }) => (await import('./serve_command.js')).serve({ mode: 'dev', configFile: options.config }));

  program.command('start')
    .description('production mode: needs a configuration file and DATABASE_URL; generates nothing')
    .requiredOption('-c, --config <file>', 'configuration file')
    .action(async (options: { config: string }) => (await import('./serve_command.js')).serve({ mode: 'start', configFile: options.config }));

  program.command('migrate')
    .description('apply database migrations and exit')
    .option('-c, --config <file>', 'configuration file')
    .addOption(jsonOption())
    .action(async (options: { config?: string; json?: boolean }) => (await commandContext()).migrate(options, io.out));

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

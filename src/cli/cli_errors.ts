import { CommanderError } from 'commander';
import { ConfigError } from '../config/config_error.js';
import { DatabaseInUseError } from '../storage/directory_lock.js';

/**
 * How every `tether` command ends (docs/cli.md#conventions):
 * 0 done (also when the goal already held: a key already retired, a client already suspended);
 * 1 nothing matched or refused (an unknown id, client or resource; a refusal; a server that cannot run);
 * 2 usage or configuration (a bad option or argument, an invalid configuration file).
 */
export const EXIT = { done: 0, refused: 1, usage: 2 } as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A refusal or "nothing matched": printed as one line on stderr, exit code 1, no stack. */
export class CommandError extends Error {
  override name = 'CommandError';
  readonly exitCode: ExitCode = EXIT.refused;
}

/** The command line itself is wrong (an option value, a missing or contradictory choice): exit code 2. */
export class UsageError extends CommandError {
  override name = 'UsageError';
  override readonly exitCode: ExitCode = EXIT.usage;
}

/**
 * A known problem of the machine the command runs on, explained with what to do about it (a port
 * in use, an unreachable database): one line, exit code 1.
 */
export class OperationalError extends Error {
  override name = 'OperationalError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** What to print for an error that ended a command, and the exit code. */
export interface Failure {
  /** Lines for stderr, each without "tether: " and without a newline. */
  lines: string[];
  exitCode: ExitCode;
}

/**
 * Known errors are one line without a stack (the stack, and that of any cause, with `--debug`);
 * an error nobody anticipated is a bug: its message, and how to see where it happened.
 */
export function describeFailure(error: unknown, debug: boolean): Failure {
  const known = knownExitCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (debug) return { lines: stackLines(error), exitCode: known ?? EXIT.refused };
  const lines = message.split('\n');
  if (known === undefined) lines.push('(an unexpected error: run the command again with --debug to see where it happened)');
  return { lines, exitCode: known ?? EXIT.refused };
}

function knownExitCode(error: unknown): ExitCode | undefined {
  if (error instanceof ConfigError) return EXIT.usage;
  if (error instanceof CommandError) return error.exitCode;
  if (error instanceof OperationalError || error instanceof DatabaseInUseError) return EXIT.refused;
  return undefined;
}

function stackLines(error: unknown): string[] {
  const lines: string[] = [];
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    const stack = (current.stack ?? current.message).split('\n');
    lines.push(...(depth === 0 ? stack : [`caused by: ${stack[0]}`, ...stack.slice(1)]));
  }
  return lines;
}

/**
 * Commander reports its own usage errors (and prints --help / --version) before throwing; the exit
 * code is ours: 0 for help and version, 2 for every usage error.
 */
export function commanderExitCode(error: CommanderError): ExitCode {
  return error.exitCode === 0 ? EXIT.done : EXIT.usage;
}

import { Option, type Command } from 'commander';

/**
 * What every `tether` command has in common (docs/cli.md#conventions): `--json` wherever data is
 * printed, snake_case names in that JSON, ids that may begin with "-", and the exit codes of
 * cli_errors.ts.
 */

/** Where a command prints: data on `out`, diagnostics on `err`. */
export interface CliIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

export const PROCESS_IO: CliIo = { out: process.stdout, err: process.stderr };

export const jsonOption = () => new Option('--json', 'print JSON (snake_case names) instead of text');
export const configOption = () => new Option('-c, --config <file>', 'configuration file (default: ./tether.config.yaml, else the development configuration)');

/**
 * Token ids, kids and client ids are base64url or free-form and may begin with "-" (about one id in
 * 64): such an argument is the id, not an option. `tether tokens show -- -abc` works as well. A
 * mistyped option is then taken for the id (and reported as not found, with a hint, see
 * {@link notFoundHint}); two of them are too many arguments.
 */
export function takesIds(command: Command): Command {
  return command.allowUnknownOption().allowExcessArguments(false);
}

/** Appended to "no such …" when the id looks like a mistyped option. */
export function notFoundHint(id: string): string {
  return id.startsWith('-') ? ` (if ${JSON.stringify(id)} was meant as an option, it is not one of this command's: --help lists them)` : '';
}

/** Every command of the tree, the root included. */
export function everyCommand(root: Command): Command[] {
  return [root, ...root.commands.flatMap((command) => everyCommand(command))];
}

/** JSON output for scripts: `JSON.stringify`, two-space indentation, one trailing newline. */
export function writeJsonTo(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

import type { Command } from 'commander';
import { UsageError } from './cli_errors.js';
import { jsonOption, writeJsonTo } from './command_conventions.js';

/** One listener's answer to `GET /readyz`. */
export interface ListenerHealth {
  readonly url: string;
  readonly ready: boolean;
  /** The HTTP status, or the reason there was none (refused, timed out, TLS failure). */
  readonly answer: string;
}

/** Exit codes: every configured listener is ready / one is not (or none is configured). */
export const HEALTH_EXIT = { ready: 0, notReady: 1 } as const;

const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * `tether health --config FILE`: asks every listener the configuration names for `/readyz` (the
 * database answers and its migrations are applied) and exits 0 only when all of them say ready. It
 * reads the same file and environment as the server, so a container's health check follows the
 * configured listeners, ports and protocols instead of hard-coding one.
 */
export function registerHealthCommand(program: Command, out: NodeJS.WritableStream = process.stdout): void {
  program.command('health')
    .description('check /readyz on every configured listener; exit 0 when all are ready (for container health checks)')
    .requiredOption('-c, --config <file>', 'configuration file (the one the server runs with)')
    .option('--timeout <ms>', 'how long each listener may take to answer', String(DEFAULT_TIMEOUT_MS))
    .addOption(jsonOption())
    .action(async (options: { config: string; timeout: string; json?: boolean }) => {
      const timeoutMs = Number(options.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError(`--timeout: expected a positive number of milliseconds (got ${JSON.stringify(options.timeout)})`);
      const { checkConfiguredListeners } = await import('./health_check.js');
      const results = await checkConfiguredListeners(options.config, timeoutMs);
      const ready = results.length > 0 && results.every((result) => result.ready);
      process.exitCode = ready ? HEALTH_EXIT.ready : HEALTH_EXIT.notReady;
      if (options.json) {
        writeJsonTo(out, { ready, listeners: results.map((result) => ({ url: result.url, ready: result.ready, answer: result.answer })) });
        return;
      }
      for (const result of results) out.write(`${result.ready ? 'ready    ' : 'NOT READY'}  ${result.url}  ${result.answer}\n`);
      if (results.length === 0) out.write(`NOT READY  ${options.config} configures no listener\n`);
    });
}

import http from 'node:http';
import https from 'node:https';
import type { Command } from 'commander';
import { loadConfigFile } from '../config/load_config.js';
import type { TetherConfig } from '../config/schema.js';
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
const MAX_BODY_BYTES = 4_096;

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
      const results = await checkListeners(await loadConfigFile(options.config), timeoutMs);
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

/** Checks each configured listener, from the same host (the listener's own address, or loopback for a wildcard). */
export function checkListeners(config: TetherConfig, timeoutMs: number): Promise<ListenerHealth[]> {
  const { https: secure, http: plain } = config.listeners;
  return Promise.all([
    ...(secure ? [checkReadiness('https', secure, timeoutMs)] : []),
    ...(plain ? [checkReadiness('http', plain, timeoutMs)] : []),
  ]);
}

async function checkReadiness(kind: 'https' | 'http', listener: { host: string; port: number }, timeoutMs: number): Promise<ListenerHealth> {
  const host = reachableHost(listener.host);
  const url = `${kind}://${host.includes(':') ? `[${host}]` : host}:${listener.port}/readyz`;
  try {
    const { status, body } = await get(kind, url, timeoutMs);
    return { url, ready: status === 200, answer: `${status} ${body}`.trim() };
  } catch (error) {
    return { url, ready: false, answer: (error as Error).message };
  }
}

/** A listener bound to every address is asked on loopback. */
function reachableHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.replace(/^\[(.*)\]$/, '$1');
}

function get(kind: 'https' | 'http', url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      signal: AbortSignal.timeout(timeoutMs),
      // This asks the process's own listener whether it is ready, not who it is: its certificate
      // names the issuer's public host, not the loopback address asked here, and may come from a
      // CA this process does not hold. Nothing secret is sent.
      ...(kind === 'https' ? { rejectUnauthorized: false } : {}),
    };
    const request = (kind === 'https' ? https : http).get(url, options, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < MAX_BODY_BYTES) body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: body.slice(0, MAX_BODY_BYTES).replace(/\s+/g, ' ') }));
      response.on('error', reject);
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      reject(new Error(error.name === 'AbortError' || error.code === 'ABORT_ERR' ? `no answer within ${timeoutMs} ms` : (error.code ?? error.message)));
    });
  });
}

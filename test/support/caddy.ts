import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stopProcess, waitUntilAccepting } from './child_server.js';

/**
 * A real Caddy for tests, like test/support/nginx.ts: a private directory (Caddyfile, storage,
 * HOME), the admin endpoint off, `caddy run` as the started process, stopped by its PID. Nothing
 * outside the directory is read or written; nothing is killed by name.
 */

/** The caddy binary: `CADDY` from the environment, else Debian's. */
export const CADDY_BINARY = process.env.CADDY ?? '/usr/bin/caddy';

export interface CaddyOptions {
  /** The site blocks of the Caddyfile, given the private directory (absolute, no trailing slash). */
  sites(directory: string): string;
  /** Files to write into the directory first (certificates, keys), by name. */
  files?: Record<string, string>;
  /** Loopback ports the configuration listens on; start resolves once each accepts a connection. */
  waitForPorts: readonly number[];
  /** A free port for Caddy's HTTP listener (it never binds :80 then). */
  httpPort: number;
}

export interface RunningCaddy {
  directory: string;
  /** What Caddy printed so far (its log, JSON lines). */
  output(): string;
  stop(): Promise<void>;
}

export async function startCaddy(options: CaddyOptions): Promise<RunningCaddy> {
  if (!existsSync(CADDY_BINARY)) throw new Error(`caddy is not installed at ${CADDY_BINARY} (Debian: apt-get install caddy; or set CADDY)`);
  const directory = await mkdtemp(path.join(os.tmpdir(), 'tether-caddy-'));
  try {
    for (const [name, content] of Object.entries(options.files ?? {})) await writeFile(path.join(directory, name), content, { mode: 0o600 });
    const caddyfile = path.join(directory, 'Caddyfile');
    await writeFile(caddyfile, `{
	admin off
	auto_https off
	http_port ${options.httpPort}
	storage file_system ${directory}/storage
}
${options.sites(directory)}
`);
    const env = { ...process.env, HOME: directory, XDG_DATA_HOME: directory, XDG_CONFIG_HOME: directory };
    const child = spawn(CADDY_BINARY, ['run', '--config', caddyfile, '--adapter', 'caddyfile'], { cwd: directory, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitUntilAccepting('caddy', options.waitForPorts, exited, 30_000);
    } catch (error) {
      await stopProcess(child, exited);
      throw new Error(`caddy did not start: ${(error as Error).message}\n${output}`);
    }
    return {
      directory,
      output: () => output,
      async stop() {
        await stopProcess(child, exited);
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

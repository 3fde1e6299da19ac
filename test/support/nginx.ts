import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stopProcess, waitUntilAccepting } from './child_server.js';

/**
 * A real nginx for tests: a private prefix directory (configuration, pid, logs, temp paths), the
 * caller's `http {}` block, `daemon off` so that the started process is the master, and a stop by
 * that PID. Nothing outside the directory is read or written; nothing is killed by name.
 *
 * ```ts
 * const port = await freePort();
 * const nginx = await startNginx({
 *   files: { 'server.pem': certificatePem, 'server.key.pem': keyPem },
 *   http: (dir) => `server { listen 127.0.0.1:${port} ssl; ssl_certificate ${dir}/server.pem; ... }`,
 *   waitForPorts: [port],
 * });
 * ...
 * await nginx.stop();
 * ```
 */

/** The nginx binary: `NGINX` from the environment, else Debian's. `.ci/run` installs `nginx-light` when it is missing. */
export const NGINX_BINARY = process.env.NGINX ?? '/usr/sbin/nginx';

export interface NginxOptions {
  /** The contents of the `http {}` block, given the prefix directory (absolute, no trailing slash). */
  http(directory: string): string;
  /** Files to write into the prefix directory first (certificates, keys), by name. */
  files?: Record<string, string>;
  /** Loopback ports the configuration listens on; start resolves once each accepts a connection. */
  waitForPorts: readonly number[];
  /** Upper bound on the wait for the ports (default 30 s, for a loaded machine). */
  startTimeoutMs?: number;
}

export interface RunningNginx {
  /** The prefix directory (configuration, logs); removed by {@link RunningNginx.stop}. */
  directory: string;
  pid: number;
  /** nginx's error log so far (useful in a failing test's message). */
  errorLog(): Promise<string>;
  /** The access log so far (`$remote_addr "$request" $status` per line). */
  accessLog(): Promise<string>;
  /**
   * Replaces the `http {}` block and reloads nginx (SIGHUP to the master, by its PID): new workers
   * take the new configuration, the old one finishes its requests and exits. Resolves once it has
   * exited (so no request is routed by the old configuration any more); bounded by `timeoutMs`.
   */
  reconfigure(http: (directory: string) => string, timeoutMs?: number): Promise<void>;
  /** Stops the master process by its PID (SIGTERM; SIGKILL after a bound) and removes the directory. */
  stop(): Promise<void>;
}

/** Ports for processes a test starts: see test/support/ports.ts. */
export { freePort } from './ports.js';

export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  if (!existsSync(NGINX_BINARY)) throw new Error(`nginx is not installed at ${NGINX_BINARY} (Debian: apt-get install nginx-light; or set NGINX)`);
  const directory = await mkdtemp(path.join(os.tmpdir(), 'tether-nginx-'));
  try {
    for (const [name, content] of Object.entries(options.files ?? {})) await writeFile(path.join(directory, name), content, { mode: 0o600 });
    const configFile = path.join(directory, 'nginx.conf');
    await writeFile(configFile, mainConfig(directory, options.http(directory)));
    const child = spawn(NGINX_BINARY, ['-p', `${directory}/`, '-c', configFile, '-e', path.join(directory, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitUntilAccepting('nginx', options.waitForPorts, exited, options.startTimeoutMs ?? 30_000);
    } catch (error) {
      await stopProcess(child, exited);
      const log = await readFile(path.join(directory, 'error.log'), 'utf8').catch(() => '');
      throw new Error(`nginx did not start: ${(error as Error).message}\n${stderr}${log}`);
    }
    return {
      directory,
      pid: child.pid!,
      errorLog: () => readFile(path.join(directory, 'error.log'), 'utf8').catch(() => ''),
      accessLog: () => readFile(path.join(directory, 'access.log'), 'utf8').catch(() => ''),
      async reconfigure(http, timeoutMs = 30_000) {
        const exitedWorkers = async () => (await readFile(path.join(directory, 'error.log'), 'utf8').catch(() => '')).match(/worker process \d+ exited/g)?.length ?? 0;
        const before = await exitedWorkers();
        await writeFile(configFile, mainConfig(directory, http(directory)));
        process.kill(child.pid!, 'SIGHUP');
        const deadline = Date.now() + timeoutMs;
        // worker_processes 1: one old worker to see exit. Bounded by count and by the deadline.
        for (let attempt = 0; (await exitedWorkers()) <= before; attempt += 1) {
          if (attempt >= 2000 || Date.now() > deadline) throw new Error(`nginx did not finish its reload:\n${await readFile(path.join(directory, 'error.log'), 'utf8').catch(() => '')}`);
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      },
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

function mainConfig(directory: string, http: string): string {
  // As root, nginx's workers would switch to `nobody`, who cannot read the private directory.
  const user = process.getuid?.() === 0 ? 'user root;' : '';
  return `${user}
daemon off;
worker_processes 1;
pid ${directory}/nginx.pid;
error_log ${directory}/error.log info;
events { worker_connections 256; }
http {
  access_log ${directory}/access.log combined;
  client_body_temp_path ${directory}/client_body;
  proxy_temp_path ${directory}/proxy;
  fastcgi_temp_path ${directory}/fastcgi;
  uwsgi_temp_path ${directory}/uwsgi;
  scgi_temp_path ${directory}/scgi;
${http}
}
`;
}

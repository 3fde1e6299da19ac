import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

/**
 * A real server run as a child process by a test (nginx, Caddy): wait until it accepts on its
 * ports, and stop it by its PID only.
 */

/** Resolves once every port accepts a TCP connection; throws if the process exits first or the bound passes. */
export async function waitUntilAccepting(name: string, ports: readonly number[], exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone: number | null | undefined;
  void exited.then((code) => { gone = code; });
  for (const port of ports) {
    // Bounded by count and by the deadline; each attempt is a short TCP connect.
    for (let attempt = 0; ; attempt += 1) {
      if (gone !== undefined) throw new Error(`${name} exited with code ${gone}`);
      if (await accepts(port)) break;
      if (attempt >= 600 || Date.now() > deadline) throw new Error(`port ${port} did not accept connections`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

/** SIGTERM (nginx's fast shutdown, Caddy's graceful stop), SIGKILL after 10 s; by PID only. */
export async function stopProcess(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL'); }, 10_000);
  await exited;
  clearTimeout(timer);
}

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/lib/ → ../..). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Node arguments that let a child run TypeScript, as `npm run dev` and `npm run bench` do. */
export const TSX = ['--import', 'tsx'];

/** A free loopback TCP port (bound and released; the tiny race is acceptable on a bench machine). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ForkOptions {
  /** Extra node flags (e.g. --cpu-prof). */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr of the child are appended here. */
  logFile?: string;
  /**
   * The child's stdout and stderr are `logFile` itself (as `server >> log 2>&1`) instead of pipes this
   * process copies: a server under load then writes its access log without waking the bench process on
   * every line (through a pipe, a write woke this process, which could run on the server's core in the
   * middle of the server's write). Not for a child whose output this process reads.
   */
  logDirect?: boolean;
  /**
   * How the child loads TypeScript: through tsx (default), or with plain node and its built-in type
   * stripping, for a module with no relative imports (the baselines: started as their users start them).
   */
  loader?: 'tsx' | 'node';
  /** Working directory (default: the repository root). */
  cwd?: string;
}

/** Forks a TypeScript module with an IPC channel; its output goes to `logFile` (or is dropped). */
export function forkTs(modulePath: string, args: string[], options: ForkOptions = {}): ChildProcess {
  const output = outputOf(options);
  const child = fork(modulePath, args, {
    cwd: REPO_ROOT,
    execArgv: [...(options.loader === 'node' ? [] : TSX), ...(options.nodeFlags ?? [])],
    env: { ...process.env, ...options.env },
    stdio: [...output, 'ipc'],
  });
  closeOwnCopy(output);
  if (!options.logDirect) pipeToLog(child, options.logFile);
  return child;
}

/** Spawns node (no IPC) with the given arguments in the repository root. */
export function spawnNode(args: string[], options: ForkOptions = {}): ChildProcess {
  const output = outputOf(options);
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: output,
  });
  closeOwnCopy(output);
  if (!options.logDirect) pipeToLog(child, options.logFile);
  return child;
}

/** stdin, stdout, stderr of a child: pipes, or the log file opened for appending (the child keeps its own descriptor). */
function outputOf(options: ForkOptions): ['ignore', 'pipe' | number, 'pipe' | number] {
  if (!options.logDirect || !options.logFile) return ['ignore', 'pipe', 'pipe'];
  const fd = openSync(options.logFile, 'a');
  return ['ignore', fd, fd];
}

/** spawn() has duplicated the log file's descriptor into the child: this process's copy can go. */
function closeOwnCopy(stdio: ['ignore', 'pipe' | number, 'pipe' | number]): void {
  if (typeof stdio[1] === 'number') closeSync(stdio[1]);
}

function pipeToLog(child: ChildProcess, logFile: string | undefined): void {
  if (logFile) {
    const log = createWriteStream(logFile, { flags: 'a' });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once('exit', () => setTimeout(() => log.end(), 50));
  } else {
    child.stdout?.resume();
    child.stderr?.resume();
  }
}

/** Resolves with the first IPC message of `type`; rejects if the child exits first or on timeout. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`no '${type}' message from child ${child.pid} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: unknown) => {
      const typed = message as { type?: string; error?: string };
      if (typed?.type === 'error') finish(new Error(`child ${child.pid}: ${typed.error}`));
      else if (typed?.type === type) finish(undefined, message as T);
    };
    const onExit = (code: number | null, signal: string | null) => finish(new Error(`child ${child.pid} exited (${code ?? signal}) before '${type}'`));
    function finish(error?: Error, value?: T) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(value as T);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Asks a child to stop (SIGTERM), and kills it if it has not exited after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/**
 * `tether …` as an operator runs it: a real Node process of src/main.ts (through tsx), its JSON log
 * lines (stderr) readable as they arrive, signals sent by its PID only.
 */

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

export interface TetherProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The JSON log lines so far, parsed (other stderr lines are left out). */
  logLines(): Record<string, unknown>[];
  /** Log lines whose `msg` matches. */
  logged(message: RegExp): Record<string, unknown>[];
  exited: Promise<number | null>;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM (graceful stop) and the exit code. */
  stop(): Promise<number | null>;
}

export function runTetherProcess(args: string[], env: Record<string, string | undefined>, cwd: string): TetherProcess {
  const childEnv: Record<string, string | undefined> = { ...process.env, TETHER_LOG_LEVEL: 'info', ...env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete childEnv[name];
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'main.ts'), ...args], { cwd, env: childEnv });
  let stdout = '';
  let stderr = '';
  const lines: Record<string, unknown>[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    stderr += text;
    const parts = (partial + text).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    logLines: () => lines,
    logged: (message) => lines.filter((line) => message.test(String(line.msg))),
    exited,
    signal(signal) {
      if (running()) process.kill(child.pid!, signal);
    },
    async stop() {
      if (running()) process.kill(child.pid!, 'SIGTERM');
      // A stop that hangs is a failure of the test, not a stuck run: SIGKILL after a bound.
      const timer = setTimeout(() => { if (running()) process.kill(child.pid!, 'SIGKILL'); }, 30_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Polls `condition` every 25 ms until it holds; bounded by `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Resolves once `tether start` logged that it listens, or `tether dev` printed its banner; throws if it exited. */
export async function waitUntilListening(run: TetherProcess): Promise<void> {
  await waitFor(() => run.logged(/^tether started$/).length > 0 || run.stdout().includes('Tether (development)') || run.child.exitCode !== null, 'tether to listen');
  if (run.child.exitCode !== null) throw new Error(`tether exited with ${run.child.exitCode}: ${run.stderr()}`);
}

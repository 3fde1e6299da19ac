import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import type { CommandContext } from '../../src/cli/inventory_output.js';
import type { RunningTether } from '../../src/testing/start_tether.js';

/** A stream that keeps what commands print. */
export class Captured extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }

  take(): string {
    const { text } = this;
    this.text = '';
    return text;
  }
}

/** A command context over the database a running Tether uses, printing into `out`. */
export function contextFor(tether: RunningTether, out: Captured): CommandContext {
  return {
    knex: tether.database.knex,
    config: tether.config,
    out,
    actor: 'cli:tester@test-host',
    facts: { requestId: 'cli-test', sourceAddress: undefined, instanceId: 'cli@test-host' },
  };
}

/** A finished run of the real `tether` command line (src/main.ts under tsx), as a user runs it. */
export interface CommandRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * Runs `tether <args>` in `cwd` to completion (at most `timeoutMs`, then it is killed). `env`
 * entries set to undefined are removed from the inherited environment.
 */
export async function runTetherToEnd(args: string[], env: Record<string, string | undefined>, cwd: string, timeoutMs = 120_000): Promise<CommandRun> {
  const childEnv: Record<string, string | undefined> = { ...process.env, TETHER_LOG_LEVEL: 'warn', ...env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete childEnv[name];
  const child = spawn(process.execPath, ['--import', `${ROOT}node_modules/tsx/dist/loader.mjs`, `${ROOT}src/main.ts`, ...args], { cwd, env: childEnv });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

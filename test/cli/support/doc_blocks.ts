import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * The command blocks of a Markdown page, run as a reader runs them: in order, in one shell, from
 * one folder, against a `tether dev` that keeps running.
 */

export const ROOT = path.resolve(new URL('../../..', import.meta.url).pathname);

/** A fenced block: its language, its text (list indentation removed) and the heading it is under. */
export interface DocBlock {
  language: string;
  text: string;
  heading: string;
  /** The next block, when it shows this one's output (```json or ``` right after it). */
  output?: DocBlock;
}

export function fencedBlocks(markdown: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  let heading = '';
  const lines = markdown.split('\n');
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!;
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, '');
    const open = /^(\s*)```(\w*)\s*$/.exec(line);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    for (index += 1; index < lines.length && !/^\s*```\s*$/.test(lines[index]!); index += 1) body.push(lines[index]!.slice(indent));
    blocks.push({ language: open[2]!, text: body.join('\n'), heading });
  }
  // An output block follows its command block with only prose in between.
  blocks.forEach((block, position) => {
    const next = blocks[position + 1];
    if (['sh', 'console'].includes(block.language) && next && ['json', ''].includes(next.language)) block.output = next;
  });
  return blocks;
}

/**
 * `expected` with "…" standing for any value (or the rest of a string); a number shown stands for
 * any number (`expires_in` is 300 or 299 depending on the second).
 */
export function matchesShown(actual: unknown, expected: unknown): boolean {
  if (expected === '…') return true;
  if (typeof expected === 'number') return typeof actual === 'number';
  if (typeof expected === 'string' && expected.endsWith('…')) return typeof actual === 'string' && actual.startsWith(expected.slice(0, -1));
  if (Array.isArray(expected)) return Array.isArray(actual) && actual.length === expected.length && expected.every((item, index) => matchesShown(actual[index], item));
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object') return false;
    const keys = Object.keys(expected);
    return keys.length === Object.keys(actual).length && keys.every((key) => matchesShown((actual as Record<string, unknown>)[key], (expected as Record<string, unknown>)[key]));
  }
  return actual === expected;
}

/** Ports for processes a test starts: see test/support/ports.ts. */
export { freePort } from '../../support/ports.js';

/**
 * A folder that looks like a fresh checkout to the commands (package.json, bin/, src/, the
 * examples, node_modules, the compiled dist/ are links to this one), so that what they create
 * (.tether/, examples' data) stays out of the real checkout.
 */
export async function sandboxCheckout(options: { examplePorts?: Record<number, number> } = {}): Promise<string> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'tether-docs-'));
  for (const entry of ['package.json', 'package-lock.json', 'bin', 'src', 'migrations', 'node_modules', 'dist', 'tsconfig.json', 'tsconfig.build.json', 'docs', 'packages']) {
    await symlink(path.join(ROOT, entry), path.join(directory, entry));
  }
  if (options.examplePorts) {
    // A copy, with the example Tether's ports replaced by free ones (its data stays in the copy).
    await cp(path.join(ROOT, 'examples'), path.join(directory, 'examples'), { recursive: true, filter: (source) => !source.includes(`${path.sep}.tether`) });
    const config = path.join(directory, 'examples', 'orders_api', 'tether.config.yaml');
    let text = await readFile(config, 'utf8');
    for (const [from, to] of Object.entries(options.examplePorts)) text = text.replaceAll(`port: ${from}`, `port: ${to}`);
    await writeFile(config, text);
  }
  return directory;
}

/** A command that runs in the background, its output kept. */
export interface Background {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function runInBackground(command: string, cwd: string, env: Record<string, string | undefined>): Background {
  const child = spawn('bash', ['-c', command], { cwd, env: { ...process.env, TETHER_LOG_LEVEL: 'warn', ...env } as NodeJS.ProcessEnv, detached: true });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Stops a background command and everything it started (its process group). */
export async function stopBackground(background: Background): Promise<void> {
  if (background.child.exitCode !== null || background.child.pid === undefined) return;
  try {
    process.kill(-background.child.pid, 'SIGINT');
  } catch {
    return;
  }
  const timer = setTimeout(() => { try { process.kill(-background.child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 15_000);
  await background.exited;
  clearTimeout(timer);
}

export async function waitFor(condition: () => boolean, what: string, output: () => string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs shell blocks in order in one bash (variables carry over); resolves to each block's output. */
export async function runBlocksInOneShell(blocks: string[], cwd: string, env: Record<string, string | undefined> = {}, timeoutMs = 120_000): Promise<{ outputs: string[]; code: number | null; stderr: string }> {
  const marker = (index: number) => `@@end of block ${index}@@`;
  const script = ['set -eo pipefail', ...blocks.flatMap((block, index) => [block, `printf '\\n%s\\n' '${marker(index)}'`])].join('\n');
  const child = spawn('bash', ['-c', script], { cwd, env: { ...process.env, TETHER_LOG_LEVEL: 'warn', ...env } as NodeJS.ProcessEnv });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  const outputs: string[] = [];
  let rest = stdout;
  blocks.forEach((_block, index) => {
    const at = rest.indexOf(`\n${marker(index)}\n`);
    if (at === -1) return;
    outputs.push(rest.slice(0, at).trim());
    rest = rest.slice(at + marker(index).length + 2);
  });
  return { outputs, code, stderr };
}

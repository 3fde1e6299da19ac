import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * A Dockerfile read and replayed without Docker: each stage is a scratch folder standing for that
 * stage's root file system, RUN commands run through `sh` in the stage's WORKDIR, COPY copies from
 * the build context (filtered by .dockerignore) or from an earlier stage's folder. What the image
 * would contain is then the final stage's folder, built by the Dockerfile's own commands.
 *
 * Only the instructions Tether's Dockerfile uses are understood; anything else is an error, so that
 * a new instruction cannot be silently left out of the replay.
 */

export type Instruction =
  | { kind: 'WORKDIR'; path: string }
  | { kind: 'COPY'; from: string | undefined; sources: string[]; destination: string }
  | { kind: 'RUN'; command: string }
  | { kind: 'ENV'; variables: Record<string, string> }
  | { kind: 'USER'; user: string }
  | { kind: 'EXPOSE'; ports: string[] }
  | { kind: 'HEALTHCHECK'; options: Record<string, string>; command: string[] }
  | { kind: 'ENTRYPOINT'; command: string[] }
  | { kind: 'CMD'; command: string[] };

export interface Stage {
  index: number;
  name: string | undefined;
  base: string;
  instructions: Instruction[];
}

/** Logical lines: continuations joined, comments and blank lines dropped (as BuildKit reads them). */
function logicalLines(text: string): string[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line)) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (whole !== '') lines.push(whole);
  }
  if (pending.trim() !== '') throw new Error('Dockerfile ends inside a continued line');
  return lines;
}

function execForm(text: string, where: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${where}: only the exec (JSON array) form is replayed, got ${text}`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((part) => typeof part === 'string')) {
    throw new Error(`${where}: expected a non-empty JSON array of strings, got ${text}`);
  }
  return parsed;
}

function flagsAndRest(text: string, where: string, allowed: readonly string[]): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = text;
  for (let match = /^--([a-z-]+)=(\S+)\s+/.exec(rest); match; match = /^--([a-z-]+)=(\S+)\s+/.exec(rest)) {
    if (!allowed.includes(match[1]!)) throw new Error(`${where}: flag --${match[1]} is not replayed`);
    flags[match[1]!] = match[2]!;
    rest = rest.slice(match[0].length);
  }
  if (rest.startsWith('--')) throw new Error(`${where}: cannot read the flag in ${rest}`);
  return { flags, rest };
}

function envVariables(text: string, where: string): Record<string, string> {
  const variables: Record<string, string> = {};
  const pair = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)\s*/y;
  let at = 0;
  while (at < text.length) {
    pair.lastIndex = at;
    const match = pair.exec(text);
    if (!match) throw new Error(`${where}: only ENV NAME=value pairs are replayed, got ${text}`);
    variables[match[1]!] = match[2]!.startsWith('"') ? (JSON.parse(match[2]!) as string) : match[2]!;
    at = pair.lastIndex;
  }
  return variables;
}

function parseInstruction(keyword: string, args: string, where: string): Instruction {
  switch (keyword) {
    case 'WORKDIR':
      return { kind: 'WORKDIR', path: args };
    case 'COPY': {
      const { flags, rest } = flagsAndRest(args, where, ['from']);
      if (rest.startsWith('[')) throw new Error(`${where}: the JSON form of COPY is not replayed`);
      const parts = rest.split(/\s+/);
      if (parts.length < 2) throw new Error(`${where}: COPY needs a source and a destination`);
      if (parts.some((part) => /[*?[]/.test(part))) throw new Error(`${where}: wildcards in COPY are not replayed`);
      return { kind: 'COPY', from: flags.from, sources: parts.slice(0, -1), destination: parts.at(-1)! };
    }
    case 'RUN':
      if (args.startsWith('[')) return { kind: 'RUN', command: execForm(args, where).map(shellQuote).join(' ') };
      if (args.startsWith('--')) throw new Error(`${where}: RUN flags are not replayed`);
      return { kind: 'RUN', command: args };
    case 'ENV':
      return { kind: 'ENV', variables: envVariables(args, where) };
    case 'USER':
      return { kind: 'USER', user: args };
    case 'EXPOSE':
      return { kind: 'EXPOSE', ports: args.split(/\s+/) };
    case 'HEALTHCHECK': {
      const { flags, rest } = flagsAndRest(args, where, ['interval', 'timeout', 'start-period', 'start-interval', 'retries']);
      const cmd = /^CMD\s+(.*)$/.exec(rest);
      if (!cmd) throw new Error(`${where}: only HEALTHCHECK [options] CMD [...] is replayed`);
      return { kind: 'HEALTHCHECK', options: flags, command: execForm(cmd[1]!, where) };
    }
    case 'ENTRYPOINT':
    case 'CMD':
      return { kind: keyword, command: execForm(args, where) };
    default:
      throw new Error(`${where}: instruction ${keyword} is not replayed`);
  }
}

/** The stages of a Dockerfile, in order. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  logicalLines(text).forEach((line, index) => {
    const [, keyword, args = ''] = /^(\S+)\s*(.*)$/.exec(line)!;
    const upper = keyword!.toUpperCase();
    const where = `Dockerfile instruction ${index + 1} (${upper})`;
    if (upper === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`${where}: cannot read FROM ${args}`);
      stages.push({ index: stages.length, name: from[2], base: from[1]!, instructions: [] });
      return;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`${where}: comes before the first FROM`);
    stage.instructions.push(parseInstruction(upper, args, where));
  });
  if (stages.length === 0) throw new Error('Dockerfile has no FROM');
  return stages;
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

// ---------------------------------------------------------------------------------------------------
// .dockerignore (the rules of moby/patternmatcher: last matching pattern wins, `!` re-includes, a
// pattern also matches every path below a matching folder)

export type ContextFilter = (relativePath: string) => boolean;

/** A predicate that says whether a context path (forward slashes, relative) is sent to the build. */
export function dockerignoreFilter(text: string): ContextFilter {
  const patterns = text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#')).map((line) => {
    const negated = line.startsWith('!');
    const cleaned = path.posix.normalize((negated ? line.slice(1) : line).trim()).replace(/^\/+/, '').replace(/\/+$/, '');
    return { negated, regex: globToRegex(cleaned) };
  });
  return (relativePath) => {
    const segments = relativePath.split('/');
    const candidates = segments.map((_, index) => segments.slice(0, index + 1).join('/'));
    let excluded = false;
    for (const { negated, regex } of patterns) {
      if (candidates.some((candidate) => regex.test(candidate))) excluded = !negated;
    }
    return !excluded;
  };
}

function globToRegex(pattern: string): RegExp {
  let source = '';
  for (let index = 0; index < pattern.length; index += 1) {
    const char = pattern[index]!;
    if (char === '*' && pattern[index + 1] === '*') {
      // `**/` matches any number of folders (none included); a trailing `**` anything.
      if (pattern[index + 2] === '/') {
        source += '(?:.*/)?';
        index += 2;
      } else {
        source += '.*';
        index += 1;
      }
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

// ---------------------------------------------------------------------------------------------------
// Replay

/** The final stage as a folder: what the image holds, and how a container of it starts. */
export interface ReplayedImage {
  /** The final stage's folder (the image's `/`). */
  root: string;
  /** The host folder of the final WORKDIR. */
  workdir: string;
  /** ENV of the final stage. */
  env: Record<string, string>;
  user: string;
  exposed: string[];
  healthcheck: string[] | undefined;
  entrypoint: string[];
  cmd: string[];
  /** Folder of every stage, by name and by index. */
  stageRoots: Map<string, string>;
}

export interface ReplayOptions {
  stages: Stage[];
  /** The build context (the repository), read through `contextFilter`. */
  context: string;
  contextFilter: ContextFilter;
  /** Empty folder that receives one folder per stage. */
  scratch: string;
  /** Environment of every RUN, before the Dockerfile's ENV (PATH with a node matching the base image, the npm cache). */
  runEnv: Record<string, string>;
  /** Receives each step as it starts, for the test's log. */
  onStep?: (step: string) => void;
  /** Upper bound for one RUN. */
  runTimeoutMs: number;
}

export async function replayDockerfile(options: ReplayOptions): Promise<ReplayedImage> {
  const stageRoots = new Map<string, string>();
  let final: ReplayedImage | undefined;
  for (const stage of options.stages) {
    const root = path.join(options.scratch, `stage-${stage.index}${stage.name ? `-${stage.name}` : ''}`);
    await makeImageFolder(root);
    const inherited = stageRoots.get(stage.base);
    if (inherited) await cp(inherited, root, { recursive: true, verbatimSymlinks: true });
    const state = { workdir: '/', env: {} as Record<string, string>, user: 'root', exposed: [] as string[], healthcheck: undefined as string[] | undefined, entrypoint: [] as string[], cmd: [] as string[] };
    const hostPath = (containerPath: string) => path.join(root, path.posix.resolve(state.workdir, containerPath));
    for (const instruction of stage.instructions) {
      options.onStep?.(`[stage ${stage.index}${stage.name ? ` ${stage.name}` : ''}] ${describeInstruction(instruction)}`);
      switch (instruction.kind) {
        case 'WORKDIR':
          state.workdir = path.posix.resolve(state.workdir, instruction.path);
          await makeImageFolder(hostPath('.'));
          break;
        case 'COPY':
          await replayCopy(instruction, hostPath, stageRoots, options);
          break;
        case 'RUN':
          await runShell(instruction.command, hostPath('.'), { ...options.runEnv, ...state.env }, options.runTimeoutMs);
          break;
        case 'ENV':
          Object.assign(state.env, instruction.variables);
          break;
        case 'USER':
          state.user = instruction.user;
          break;
        case 'EXPOSE':
          state.exposed.push(...instruction.ports);
          break;
        case 'HEALTHCHECK':
          state.healthcheck = instruction.command;
          break;
        case 'ENTRYPOINT':
          state.entrypoint = instruction.command;
          break;
        case 'CMD':
          state.cmd = instruction.command;
          break;
      }
    }
    stageRoots.set(String(stage.index), root);
    if (stage.name) stageRoots.set(stage.name, root);
    final = { ...state, root, workdir: hostPath('.'), stageRoots };
  }
  return final!;
}

/** Image folders are 0755 (as in every base image), whatever the umask of this process. */
async function makeImageFolder(folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  await chmod(folder, 0o755);
}

function describeInstruction(instruction: Instruction): string {
  switch (instruction.kind) {
    case 'COPY':
      return `COPY ${instruction.from ? `--from=${instruction.from} ` : ''}${instruction.sources.join(' ')} ${instruction.destination}`;
    case 'RUN':
      return `RUN ${instruction.command}`;
    case 'WORKDIR':
      return `WORKDIR ${instruction.path}`;
    default:
      return instruction.kind;
  }
}

/**
 * COPY as Docker does it: a folder's contents go into the destination folder; a file goes to the
 * destination path, or into it when it ends with `/` or there are several sources. Context files
 * that .dockerignore leaves out do not exist for the build.
 */
async function replayCopy(
  instruction: Extract<Instruction, { kind: 'COPY' }>,
  hostPath: (containerPath: string) => string,
  stageRoots: Map<string, string>,
  options: ReplayOptions,
): Promise<void> {
  const fromRoot = instruction.from === undefined ? undefined : stageRoots.get(instruction.from);
  if (instruction.from !== undefined && !fromRoot) throw new Error(`COPY --from=${instruction.from}: no earlier stage of that name`);
  const intoFolder = instruction.destination.endsWith('/') || instruction.sources.length > 1;
  const destination = hostPath(instruction.destination);
  for (const source of instruction.sources) {
    const sourcePath = fromRoot
      ? path.join(fromRoot, path.posix.resolve('/', source))
      : path.join(options.context, path.posix.normalize(source).replace(/^\/+/, ''));
    const relativeInContext = fromRoot ? undefined : path.relative(options.context, sourcePath).split(path.sep).join('/');
    if (relativeInContext !== undefined && (relativeInContext.startsWith('..') || !options.contextFilter(relativeInContext))) {
      throw new Error(`COPY ${source}: not in the build context (.dockerignore leaves it out)`);
    }
    const info = await stat(sourcePath).catch(() => undefined);
    if (!info) throw new Error(`COPY ${source}: no such file${fromRoot ? ` in stage ${instruction.from}` : ' in the build context'}`);
    const target = info.isDirectory() ? destination : intoFolder ? path.join(destination, path.basename(sourcePath)) : destination;
    await mkdir(info.isDirectory() ? target : path.dirname(target), { recursive: true });
    // Folders are always entered: .dockerignore may leave a folder out and let files in it back in.
    const filter = relativeInContext === undefined
      ? undefined
      : async (from: string) => (await stat(from)).isDirectory() || options.contextFilter(path.relative(options.context, from).split(path.sep).join('/'));
    await cp(sourcePath, target, { recursive: true, verbatimSymlinks: true, filter });
  }
}

/** Runs one RUN command through sh in `cwd`; rejects with its output when it fails or outlives `timeoutMs`. */
export function runShell(command: string, cwd: string, env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // Docker runs `/bin/sh -c <command>` with umask 022, whatever the umask of this process.
    const child = spawn('sh', ['-c', 'umask 022 && exec sh -c "$1"', 'sh', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const timer = setTimeout(() => {
      // The whole process group: npm starts children of its own.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`RUN ${command} (in ${cwd}) ${signal ? `was killed (${signal}) after ${timeoutMs} ms` : `exited with ${code}`}:\n${output.slice(-4000)}`));
    });
  });
}

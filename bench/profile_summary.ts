/**
 * Summarises a V8 CPU profile (`npm run bench -- --profile <server>` writes one per server child to
 * bench/results/profiles/): where the busy time went, by package and by function.
 *
 *   node --import tsx bench/profile_summary.ts bench/results/profiles/tether-pg.cpuprofile [top=25] [skip seconds=0]
 *
 * Shares are of busy time (all samples except `(idle)`). "self" is time in the function itself,
 * "total" includes what it called (each function counted once per sample, so recursion is not
 * double-counted).
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

/** Where a frame's code comes from: a package, a Tether folder, Node itself, or V8. */
export function originOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native / V8)';
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (packageMatch) return packageMatch[1]!;
  if (url.startsWith('node:')) return 'node: internals';
  const tether = /\/(src\/[^/]+)\//.exec(url);
  if (tether) return `tether ${tether[1]}`;
  return url.replace(/^file:\/\//, '');
}

function label(frame: CallFrame): string {
  const file = frame.url.replace(/^file:\/\//, '').replace(/.*node_modules\//, '').replace(/.*\/(src|bench)\//, '$1/');
  return `${frame.functionName || '(anonymous)'} ${file ? `${file}:${frame.lineNumber + 1}` : ''}`.trim();
}

/**
 * @param skipSeconds leave out the first seconds of the profile (start-up: module loading, key
 *   loading, migrations) so that the summary is about serving requests.
 */
export function summarise(profile: CpuProfile, top = 25, skipSeconds = 0): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const selfTime = new Map<number, number>();
  let elapsed = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    elapsed += delta;
    if (elapsed >= skipSeconds * 1e6) selfTime.set(id, (selfTime.get(id) ?? 0) + delta);
  });

  let idle = 0;
  let busy = 0;
  const selfByFunction = new Map<string, number>();
  const totalByFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  for (const [id, micros] of selfTime) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') {
      idle += micros;
      continue;
    }
    busy += micros;
    const key = label(node.callFrame);
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + micros);
    const origin = originOf(node.callFrame);
    byOrigin.set(origin, (byOrigin.get(origin) ?? 0) + micros);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frameKey = label(byId.get(at)!.callFrame);
      if (seen.has(frameKey)) continue;
      seen.add(frameKey);
      totalByFunction.set(frameKey, (totalByFunction.get(frameKey) ?? 0) + micros);
    }
  }

  const share = (micros: number) => `${((100 * micros) / busy).toFixed(1).padStart(5)} %`;
  const list = (entries: Map<string, number>, count: number) => [...entries].sort((a, b) => b[1] - a[1]).slice(0, count).map(([key, micros]) => `  ${share(micros)}  ${key}`);
  const seconds = (micros: number) => (micros / 1e6).toFixed(1);
  return [
    ...(skipSeconds ? [`first ${skipSeconds} s left out`] : []),
    `busy ${seconds(busy)} s, idle ${seconds(idle)} s (busy ${((100 * busy) / (busy + idle)).toFixed(0)} % of the profiled time)`,
    '',
    'self time by origin:',
    ...list(byOrigin, top),
    '',
    'self time by function:',
    ...list(selfByFunction, top),
    '',
    'total time (self + callees) by function:',
    ...list(totalByFunction, top),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top, skip] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/profile_summary.ts <file.cpuprofile> [top] [skip seconds]\n');
    process.exit(2);
  }
  process.stdout.write(`${summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(top ?? 25), Number(skip ?? 0))}\n`);
}

/** Command-line options of `npm run bench` (docs/benchmarks.md, "Running it"). */
export type Section = 'load' | 'verifier' | 'coldstart' | 'inventory' | 'ledger' | 'signing' | 'report';

export const SECTIONS: readonly Section[] = ['load', 'ledger', 'signing', 'verifier', 'coldstart', 'inventory', 'report'];

export interface Options {
  quick: boolean;
  durationSeconds: number;
  warmupSeconds: number;
  rounds: number;
  connections: number;
  sections: Set<Section>;
  subjects?: Set<string>;
  profile?: string;
  verifierSeconds: number;
  coldStarts: number;
  /** Ledger rows (issued_tokens and ledger_events each) for the inventory section. */
  inventoryRows: number;
  /** Use events appended for the report section (`tether report` at a million events). */
  reportEvents: number;
  /** Start every party without CPU pinning even where taskset exists. */
  noPin: boolean;
  /**
   * A git revision to measure side by side with the working tree: each Tether load subject runs a
   * second time from that revision's sources (`<subject>@<ref>`), in the same interleaved rounds.
   */
  compare?: string;
  /**
   * With `--compare A..B`: the Tether subjects themselves run from revision B (not the working tree),
   * so that one commit can be measured against its parent.
   */
  revision?: string;
  /** The ledger section measures these git revisions beside the working tree (`--revisions a,b`). */
  revisions?: string[];
}

const FLAGS_WITH_VALUE = new Set(['--only', '--subjects', '--profile', '--duration', '--rounds', '--inventory-rows', '--report-events', '--compare', '--revisions', '--warmup']);

/**
 * Sections are chosen by name, as positional arguments (`npm run bench -- load inventory`) or with
 * `--only load,inventory`; none named means every section.
 */
export function parseOptions(argv: readonly string[]): Options {
  const value = (name: string) => {
    const at = argv.indexOf(name);
    return at === -1 ? undefined : argv[at + 1];
  };
  const list = (name: string) => value(name)?.split(',').map((item) => item.trim()).filter(Boolean);
  const positional = argv.filter((argument, index) => !argument.startsWith('--') && !FLAGS_WITH_VALUE.has(argv[index - 1] ?? ''));
  const named = [...(list('--only') ?? []), ...positional];
  for (const section of named) {
    if (!(SECTIONS as readonly string[]).includes(section)) throw new Error(`unknown section ${section} (one of ${SECTIONS.join(', ')})`);
  }
  const quick = argv.includes('--quick');
  const number = (name: string, fallback: number) => {
    const raw = value(name);
    if (raw === undefined) return fallback;
    const parsed = Number(raw);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name}: not a positive number: ${raw}`);
    return parsed;
  };
  const subjects = list('--subjects');
  return {
    quick,
    durationSeconds: number('--duration', quick ? 2 : 10),
    // V8 goes on optimising Tether's code for ~10 s after the first request (docs/benchmarks.md, "How it
    // measures"): a shorter warm-up measures its compiler in the first rounds, more for Tether than for bare.
    warmupSeconds: number('--warmup', quick ? 1 : 12),
    rounds: number('--rounds', quick ? 1 : 5),
    connections: 10,
    sections: new Set((named.length ? named : SECTIONS) as Section[]),
    subjects: subjects && new Set(subjects),
    profile: value('--profile'),
    verifierSeconds: quick ? 0.5 : 3,
    coldStarts: quick ? 2 : 5,
    inventoryRows: number('--inventory-rows', quick ? 100_000 : 1_000_000),
    reportEvents: number('--report-events', quick ? 100_000 : 1_000_000),
    noPin: argv.includes('--no-pin'),
    compare: value('--compare')?.split('..')[0],
    revision: value('--compare')?.split('..')[1] || undefined,
    revisions: list('--revisions'),
  };
}

/** Only a run of every section with the full settings rewrites docs/benchmarks.md and latest.json. */
export function isCompleteRun(options: Options): boolean {
  return !options.quick && !options.subjects && options.sections.size === SECTIONS.length && !options.profile && !options.noPin && !options.compare && options.rounds >= 5;
}

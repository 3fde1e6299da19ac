import { formatPath, type ConfigPath } from './redact.js';
import type { TetherConfig } from './schema.js';

/**
 * What a configuration reload (SIGHUP, docs/operations.md#configuration-reload) may change in a
 * running instance, and what only a restart can: the sections below are read once, at start, by
 * the listeners, the database pool, the key feed and the middleware built around them. A reload
 * applies the live sections and keeps the running values of the others, reporting every changed
 * path as "needs restart" — so that removing a compromised client is never held up by an edit
 * elsewhere in the file.
 */

/** The sections a reload replaces: policy, read by each request from its snapshot. */
export const LIVE_SECTIONS = ['resources', 'clients', 'exchange', 'dpop'] as const satisfies readonly (keyof TetherConfig)[];

type LiveSection = (typeof LIVE_SECTIONS)[number];

/** Every other top-level section, which only a restart changes. */
export const RESTART_SECTIONS = [
  'issuer', 'databaseUrl', 'dataDir', 'database', 'listeners', 'trustedProxies', 'clientCertHeader', 'signing', 'http', 'ledger', 'admin', 'useReports',
  // Trusted issuers' key sources are read and cached at start (federation/issuer_keys.ts); a client's
  // federatedIdentities (in `clients`) are live, so removing one takes effect at a reload.
  'federation',
  'metrics',
] as const satisfies readonly Exclude<keyof TetherConfig, LiveSection>[];

// A section added to the schema but to neither list fails to compile here.
type Unlisted = Exclude<keyof TetherConfig, LiveSection | (typeof RESTART_SECTIONS)[number]>;
const everySectionListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everySectionListed;

export interface ReloadPlan {
  /** The configuration to run: the file's live sections, the running restart-only ones. */
  config: TetherConfig;
  /** Paths whose value in the file differs from the running one and waits for a restart (names only, never values). */
  needsRestart: string[];
}

export function planReload(running: TetherConfig, next: TetherConfig): ReloadPlan {
  const needsRestart = RESTART_SECTIONS.flatMap((section) => changedPaths(running[section], next[section], [section]));
  const config = { ...running };
  for (const section of LIVE_SECTIONS) (config as Record<LiveSection, unknown>)[section] = next[section];
  return { config, needsRestart };
}

/** Leaf paths at which `a` and `b` differ; a whole subtree present on one side only is one path. */
function changedPaths(a: unknown, b: unknown, at: ConfigPath): string[] {
  if (Object.is(a, b)) return [];
  const bothArrays = Array.isArray(a) && Array.isArray(b);
  const bothRecords = isRecord(a) && isRecord(b);
  if (bothArrays && a.length !== b.length) return [formatPath(at)];
  if (bothArrays || bothRecords) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    return [...keys].flatMap((key) => {
      const index = bothArrays ? Number(key) : key;
      return changedPaths((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], [...at, index]);
    });
  }
  return [formatPath(at)];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

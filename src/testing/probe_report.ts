/**
 * The probe's report as a table for people and as JSON for CI.
 */
import { renderTable } from '../text/table.js';
import type { ProbeReport } from './probe.js';
import type { ThroughReport } from './probe_through.js';

const COLUMNS = ['CHECK', 'SENT', 'EXPECTED', 'ANSWERED', 'RESULT'] as const;
/** Notes longer than this are printed once below the table and referred to by number. */
const INLINE_NOTE_LENGTH = 48;

/** A plain-text table, one check per line, and a summary naming the failed checks. */
export function formatProbeTable(report: ProbeReport): string {
  const footnotes: string[] = [];
  const noteText = (note: string) => {
    if (note.length <= INLINE_NOTE_LENGTH) return note;
    if (!footnotes.includes(note)) footnotes.push(note);
    return `note ${footnotes.indexOf(note) + 1}`;
  };
  const rows = report.results.map((result) => [
    result.id,
    result.sent,
    result.expected,
    result.answered,
    result.verdict.toUpperCase() + (result.note ? ` (${noteText(result.note)})` : ''),
  ]);
  const failed = report.results.filter((result) => result.verdict === 'fail' || result.verdict === 'error').map((result) => result.id);
  return [
    `${report.method} ${report.url}`,
    '',
    renderTable(COLUMNS, rows),
    '',
    `${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped${failed.length > 0 ? ` — failed: ${failed.join(', ')}` : ''}`,
    ...footnotes.map((note, index) => `note ${index + 1}: ${note}`),
  ].join('\n');
}

/** The report as JSON (stable snake_case field names: `url`, `method`, `ok`, counts, `results[]`). */
export function formatProbeJson(report: ProbeReport): string {
  return JSON.stringify(snakeCaseKeys(report), null, 2);
}

/** Field names as the CLI's JSON spells them (docs/cli.md#conventions): `refusedByGateway` → `refused_by_gateway`. */
function snakeCaseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeCaseKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`), snakeCaseKeys(child)]));
}

const THROUGH_COLUMNS = ['CHECK', 'EXPECTED', 'GATEWAY', 'DIRECT', 'ENFORCED BY', 'RESULT'] as const;

/**
 * The gateway probe (probe_through.ts) as a table: per check the answer through the gateway and at
 * the upstream, who enforces it, and the verdict through the gateway; then who enforces what.
 */
export function formatThroughTable(report: ThroughReport): string {
  const rows = report.results.map((result) => [
    result.id,
    result.expected,
    result.gateway.answered + (result.gateway.refusedByGateway ? ' (gateway)' : ''),
    result.direct.answered,
    result.enforcedBy,
    result.gateway.verdict.toUpperCase() + (result.gateway.note && result.gateway.note.length <= INLINE_NOTE_LENGTH ? ` (${result.gateway.note})` : ''),
  ]);
  const { gatewayReport: through } = report;
  const failed = through.results.filter((result) => result.verdict === 'fail' || result.verdict === 'error').map((result) => result.id);
  const who = (label: string, ids: readonly string[]) => (ids.length > 0 ? [`${label}: ${ids.join(', ')}`] : []);
  return [
    `${report.method} ${report.url} (gateway) and ${report.upstreamUrl} (direct)`,
    '',
    renderTable(THROUGH_COLUMNS, rows),
    '',
    `through the gateway: ${through.passed} passed, ${through.failed} failed, ${through.skipped} skipped${failed.length > 0 ? ` — failed: ${failed.join(', ')}` : ''}`,
    ...who('enforced by the gateway only (the API accepts them directly)', report.enforcement.gateway),
    ...who('enforced by the API itself', report.enforcement.api),
    ...who('enforced by both', report.enforcement.both),
    ...who('enforced by neither', report.enforcement.neither),
    ...who('not judged', report.enforcement.unknown),
  ].join('\n');
}

/** The gateway probe's report as JSON (`ok`, `upstream_url`, `enforcement`, `results[]` with `gateway`, `direct`, `enforced_by`). */
export function formatThroughJson(report: ThroughReport): string {
  const { gatewayReport: _gateway, directReport: _direct, ...rest } = report;
  return JSON.stringify(snakeCaseKeys(rest), null, 2);
}

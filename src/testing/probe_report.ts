/**
 * The probe's report as a table for people and as JSON for CI.
 */
import { renderTable } from '../text/table.js';
import type { ProbeReport } from './probe.js';

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

/** The report as JSON (stable field names: `url`, `method`, `ok`, counts, `results[]`). */
export function formatProbeJson(report: ProbeReport): string {
  return JSON.stringify(report, null, 2);
}

/**
 * Plain-text tables for people reading a terminal: the CLI's listings and the probe's report
 * (testing/probe_report.ts) share this one renderer, so neither folder imports the other for it.
 */

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

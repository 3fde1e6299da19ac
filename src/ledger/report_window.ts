/**
 * The exposure report's window as the command line and the admin API take it: whole UTC days,
 * today included. Apart from exposure_report.ts so that `tether report`'s option parser is defined
 * without loading the report's queries.
 */

/** The longest window: rollups are kept per day, a longer one would only be a slower query. */
export const MAX_WINDOW_DAYS = 3660;

/** The window when none is given. */
export const DEFAULT_WINDOW_DAYS = 30;

/** `30d` (or `30`): a whole number of days from 1 to {@link MAX_WINDOW_DAYS}; undefined if it is not one. */
export function windowDaysOf(text: string): number | undefined {
  const match = /^(\d{1,4})d?$/.exec(text.trim());
  const days = match ? Number(match[1]) : Number.NaN;
  return Number.isInteger(days) && days >= 1 && days <= MAX_WINDOW_DAYS ? days : undefined;
}

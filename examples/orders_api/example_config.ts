/**
 * The resources and clients of `tether.config.yaml`, for tests that start the example's Tether
 * themselves (the harness or the test sets issuer, ports and data directory).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

export const ORDERS_RESOURCE = 'https://orders.example.test';
/** Tether's use-report resource: the audience of the tokens the API reports its use with (docs/use-reports.md). */
export const USE_REPORTS_RESOURCE = 'https://use-reports.example.test';

/** `{ resources, clients, useReports }` of the example's Tether configuration. */
export function exampleTetherConfig(): Record<string, unknown> {
  const { resources, clients, useReports } = parseYaml(readFileSync(new URL('./tether.config.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  return { resources, clients, useReports };
}

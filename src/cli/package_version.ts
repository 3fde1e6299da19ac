import { readFileSync } from 'node:fs';

const PACKAGE_NAME = 'tether-oauth';

/**
 * The version in Tether's own package.json, for `tether --version`.
 *
 * This module runs from `src/cli/` (tsx, ts-jest) and from `dist/src/cli/` (the built and installed
 * package), two and three levels below the package root; the file found must be Tether's, not a
 * package.json that happens to sit above an unexpected layout.
 */
export function packageVersion(): string {
  for (const relative of ['../../package.json', '../../../package.json']) {
    const manifest = readManifest(new URL(relative, import.meta.url));
    if (manifest?.name === PACKAGE_NAME && typeof manifest.version === 'string') return manifest.version;
  }
  throw new Error(`cannot find the package.json of ${PACKAGE_NAME} next to ${new URL('.', import.meta.url).pathname}`);
}

function readManifest(url: URL): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(url, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined;
  }
}

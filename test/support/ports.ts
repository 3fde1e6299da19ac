import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Ports for servers a test starts as separate processes (the port goes on their command line, so
 * the test cannot let the process bind port 0 itself).
 *
 * "Bind port 0, read it, close it" was not enough: the port is free again the moment it is closed,
 * so the kernel could hand it out once more — to the next call in the same test, or to another
 * test file running at the same time in the other Jest worker — before the intended process bound
 * it (CI once saw the README walk's example Tether refused because `tether dev` of the same walk
 * held its port). Two rules close that:
 * - ports come from below the kernel's ephemeral range (`ip_local_port_range`), which it never
 *   picks for `listen(0)` or an outgoing connection;
 * - each port is claimed for the whole test run by creating a file named after it, exclusively
 *   (`wx`), in a folder the Jest run shares across its workers (`TETHER_TEST_PORT_CLAIMS`, set in
 *   jest.config.js) — so no two callers, in any worker, get the same one;
 * and a claimed port is still checked by binding it, in case something outside the run holds it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const claims = claimsFolder();
  const [low, high] = candidateRange();
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (!claim(claims, port)) continue;
    if (await bindable(port, host)) return port;
  }
  throw new Error(`no free port found in ${low}–${high} after 200 attempts (claims in ${claims})`);
}

function claimsFolder(): string {
  const folder = process.env.TETHER_TEST_PORT_CLAIMS ?? path.join(os.tmpdir(), `tether-test-ports-${process.pid}`);
  mkdirSync(folder, { recursive: true });
  return folder;
}

/** Below the ephemeral range when there is room there (Linux default 32768–60999), else above it. */
function candidateRange(): [number, number] {
  const [first, last] = ephemeralRange();
  if (first - 10_000 >= 4_000) return [10_000, first];
  if (65_535 - last >= 4_000) return [last + 1, 65_536];
  return [10_000, 65_536];
}

function ephemeralRange(): [number, number] {
  try {
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(first) && Number.isInteger(last)) return [first!, last!];
  } catch {
    // Not Linux, or /proc is hidden: assume the kernel's default.
  }
  return [32_768, 60_999];
}

function claim(folder: string, port: number): boolean {
  try {
    closeSync(openSync(path.join(folder, String(port)), 'wx'));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

async function bindable(port: number, host: string): Promise<boolean> {
  const server = createServer();
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (bound) await new Promise((resolve) => server.close(resolve));
  return bound;
}

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Agent, fetch } from 'undici';
import { readDevCredential, type DevCredential } from '../admin/dev_credential.js';
import type { TetherConfig } from '../config/schema.js';
import { liveLockHolder } from '../storage/directory_lock.js';

/**
 * Where the inventory commands get their data: the database, or — when a running `tether dev` holds
 * the embedded database (PGlite has a single owner) — that server's admin API, with the local
 * credential it wrote to the data directory. The server runs the same command function and sends
 * back exactly what it would have printed (src/admin/operations.ts).
 */

/** One admin API call standing for a command: the operation's path below `<admin>/api`, and its input. */
export interface RemoteRequest {
  method: 'GET' | 'POST';
  path: string;
  input: Record<string, string | number | boolean | undefined>;
  json?: boolean;
}

/** The running `tether dev` that holds this configuration's embedded database, if one does. */
export async function runningDevServer(config: TetherConfig): Promise<DevCredential | undefined> {
  if (config.databaseUrl) return undefined;
  const holder = liveLockHolder(path.join(config.dataDir, 'db'));
  if (holder === undefined) return undefined;
  const credential = await readDevCredential(config.dataDir);
  // The credential of the process that holds the database, not a stale one left by another.
  return credential?.pid === holder ? credential : undefined;
}

function stringInput(input: RemoteRequest['input'], json: boolean): Record<string, string> {
  const values: Record<string, string> = { format: json ? 'json' : 'text' };
  for (const [name, value] of Object.entries(input)) if (value !== undefined && value !== false) values[name] = String(value);
  return values;
}

/**
 * Sends the request and copies the answer to `out` as it arrives (a followed ledger streams). A
 * refusal is one line on `err` and exit code 1, as the local command prints it.
 */
export async function callRunningServer(
  credential: DevCredential, request: RemoteRequest, actor: string,
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream; signal?: AbortSignal } = { out: process.stdout, err: process.stderr },
): Promise<void> {
  const input = stringInput(request.input, request.json === true);
  const dispatcher = await dispatcherFor(credential);
  try {
    const response = await send(credential, request.method, request.path, input, actor, dispatcher, io.signal);
    if (response.status !== 200) {
      const body = await response.text();
      let description = `the running tether dev answered ${response.status}`;
      try {
        const parsed = JSON.parse(body) as { error?: string; error_description?: string };
        description = parsed.error_description ?? (response.status === 401 ? `the running tether dev refused the local credential (${parsed.error ?? 'unauthorized'})` : description);
      } catch {
        // Not JSON: keep the status line.
      }
      io.err.write(`tether: ${description}\n`);
      process.exitCode = 1;
      return;
    }
    try {
      for await (const chunk of response.body ?? []) io.out.write(chunk as Uint8Array);
    } catch (error) {
      if (!io.signal?.aborted) throw error;
    }
  } finally {
    await dispatcher?.close();
  }
}

function dispatcherFor(credential: DevCredential): Promise<Agent | undefined> | undefined {
  return credential.caFile ? readFile(credential.caFile, 'utf8').then((ca) => new Agent({ connect: { ca } })) : undefined;
}

async function send(
  credential: DevCredential, method: 'GET' | 'POST', operationPath: string, input: Record<string, string>, actor: string,
  dispatcher: Agent | undefined, signal: AbortSignal | undefined,
) {
  const url = new URL(`${credential.url}/api${operationPath}`);
  if (method === 'GET') for (const [name, value] of Object.entries(input)) url.searchParams.set(name, value);
  return fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${credential.secret}`,
      'x-tether-actor': actor,
      ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
    },
    body: method === 'POST' ? JSON.stringify(input) : undefined,
    dispatcher,
    signal,
  }).catch((error: unknown) => {
    throw new Error(`the running tether dev (process ${credential.pid}) did not answer at ${credential.url}: ${(error as Error).message}`);
  });
}

/** One GET of a JSON document from the running server's admin API; anything but 200 is an error naming the answer. */
export async function getFromRunningServer(credential: DevCredential, operationPath: string, actor: string): Promise<unknown> {
  const dispatcher = await dispatcherFor(credential);
  try {
    const response = await send(credential, 'GET', operationPath, { format: 'json' }, actor, dispatcher, AbortSignal.timeout(10_000));
    const body = await response.text();
    if (response.status !== 200) throw new Error(`the running tether dev answered ${response.status} to ${operationPath}: ${body.slice(0, 200)}`);
    return JSON.parse(body) as unknown;
  } finally {
    await dispatcher?.close();
  }
}

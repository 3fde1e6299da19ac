import http from 'node:http';
import https from 'node:https';
import { loadConfigFile } from '../config/load_config.js';
import type { TetherConfig } from '../config/schema.js';
import type { ListenerHealth } from './health_command.js';

/** What `tether health` does (health_command.ts registers it): `GET /readyz` on each listener. */

const MAX_BODY_BYTES = 4_096;

/** Reads the configuration file as the server does, then checks each listener it names. */
export async function checkConfiguredListeners(configFile: string, timeoutMs: number): Promise<ListenerHealth[]> {
  return checkListeners(await loadConfigFile(configFile), timeoutMs);
}

/** Checks each configured listener, from the same host (the listener's own address, or loopback for a wildcard). */
export function checkListeners(config: TetherConfig, timeoutMs: number): Promise<ListenerHealth[]> {
  const { https: secure, http: plain } = config.listeners;
  return Promise.all([
    ...(secure ? [checkReadiness('https', secure, timeoutMs)] : []),
    ...(plain ? [checkReadiness('http', plain, timeoutMs)] : []),
  ]);
}

async function checkReadiness(kind: 'https' | 'http', listener: { host: string; port: number }, timeoutMs: number): Promise<ListenerHealth> {
  const host = reachableHost(listener.host);
  const url = `${kind}://${host.includes(':') ? `[${host}]` : host}:${listener.port}/readyz`;
  try {
    const { status, body } = await get(kind, url, timeoutMs);
    return { url, ready: status === 200, answer: `${status} ${body}`.trim() };
  } catch (error) {
    return { url, ready: false, answer: (error as Error).message };
  }
}

/** A listener bound to every address is asked on loopback. */
function reachableHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.replace(/^\[(.*)\]$/, '$1');
}

function get(kind: 'https' | 'http', url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      signal: AbortSignal.timeout(timeoutMs),
      // This asks the process's own listener whether it is ready, not who it is: its certificate
      // names the issuer's public host, not the loopback address asked here, and may come from a
      // CA this process does not hold. Nothing secret is sent.
      ...(kind === 'https' ? { rejectUnauthorized: false } : {}),
    };
    const request = (kind === 'https' ? https : http).get(url, options, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < MAX_BODY_BYTES) body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: body.slice(0, MAX_BODY_BYTES).replace(/\s+/g, ' ') }));
      response.on('error', reject);
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      reject(new Error(error.name === 'AbortError' || error.code === 'ABORT_ERR' ? `no answer within ${timeoutMs} ms` : (error.code ?? error.message)));
    });
  });
}

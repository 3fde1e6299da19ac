import * as oauth from 'oauth4webapi';
import { fetch, type Agent } from 'undici';
import { startTether, type RunningTether, type StartTetherOptions } from '../../src/testing/start_tether.js';
import { openTestDatabase } from './database.js';

/**
 * A Tether for one test file, on the database the run is configured for: PostgreSQL when
 * DATABASE_URL is set (a fresh database per call), else in-memory PGlite.
 */
export async function startTestTether(options: Omit<StartTetherOptions, 'database'> = {}): Promise<RunningTether> {
  const database = await openTestDatabase();
  try {
    const tether = await startTether({ ...options, database });
    return {
      ...tether,
      async close() {
        await tether.close();
        await database.close();
      },
    };
  } catch (error) {
    await database.close();
    throw error;
  }
}

export interface TokenResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** POSTs a form to the token endpoint (or another endpoint) over real TLS. */
export async function postForm(
  url: string,
  form: Record<string, string | string[]>,
  options: { dispatcher: Agent; headers?: Record<string, string> },
): Promise<TokenResponse> {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) {
    for (const item of Array.isArray(value) ? value : [value]) body.append(name, item);
  }
  const response = await fetch(url, {
    method: 'POST',
    body,
    headers: { accept: 'application/json', ...options.headers },
    dispatcher: options.dispatcher,
  });
  const text = await response.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: response.status, headers: response.headers as unknown as Headers, body: parsed };
}

export function basicAuth(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

/** oauth4webapi's fetch hook (`[oauth.customFetch]`), over undici with the given dispatcher. */
export function oauthFetch(dispatcher: Agent) {
  return ((url: string, options: object) => fetch(url, { ...options, dispatcher })) as never;
}

/** RFC 8414 discovery of a running Tether, as oauth4webapi's AuthorizationServer. */
export async function discoverWithOauth4webapi(tether: RunningTether, dispatcher: Agent): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(tether.issuer);
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.customFetch]: oauthFetch(dispatcher) });
  return oauth.processDiscoveryResponse(issuer, response);
}

import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { Knex } from 'knex';
import { fetch } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm, type TokenResponse } from '../support/tether.js';
import { INVOICES, LedgerClient, ORDERS, REPORTS } from '../ledger/ledger_config.js';

/**
 * Steady open-loop load for the outage tests: a request every `intervalMs` whatever the previous
 * ones are doing (a frozen database must not make callers pile up), mixing the token path's database
 * steps — JWT and opaque client_credentials, token exchange, introspection — and a /readyz probe.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export type Kind = 'jwt' | 'opaque' | 'exchange' | 'introspect' | 'readyz';
const KINDS: Kind[] = ['jwt', 'opaque', 'exchange', 'introspect', 'readyz'];

export interface Outcome {
  kind: Kind;
  startedAt: number;
  endedAt: number | undefined;
  status: number | undefined;
  retryAfter: string | null | undefined;
  error: unknown;
  /** Ledger id of a delivered token (jti, or SHA-256 of an opaque token), and its expected event type. */
  token: { id: string; event: 'token.issued' | 'token.exchanged' } | undefined;
  active: unknown;
  failure: string | undefined;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Load {
  outcomes: Outcome[];
  stop(): Promise<Outcome[]>;
}

/** Starts the load; `subject` is a live worker token (exchanged by orders-api, introspected by it). */
export function startLoad(tether: RunningTether, client: LedgerClient, subject: string, intervalMs: number): Load {
  const outcomes: Outcome[] = [];
  const running: Promise<void>[] = [];
  let stopping = false;

  async function send(kind: Kind): Promise<TokenResponse> {
    switch (kind) {
      case 'jwt': return client.token('worker', ORDERS);
      case 'opaque': return client.token('worker', REPORTS);
      case 'exchange':
        return postForm(tether.tokenEndpoint, {
          grant_type: TOKEN_EXCHANGE, client_id: 'orders-api', subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, resource: INVOICES,
        }, { dispatcher: client.agent('orders-api') });
      case 'introspect': return client.introspectAs('orders-api', subject);
      case 'readyz': {
        const response = await fetch(`${tether.issuer}/readyz`, { dispatcher: client.agent() });
        return { status: response.status, headers: response.headers as unknown as Headers, body: await response.json() as Record<string, unknown> };
      }
    }
  }

  async function one(kind: Kind): Promise<void> {
    const outcome: Outcome = { kind, startedAt: performance.now(), endedAt: undefined, status: undefined, retryAfter: undefined, error: undefined, token: undefined, active: undefined, failure: undefined };
    outcomes.push(outcome);
    try {
      const { status, headers, body } = await send(kind);
      outcome.status = status;
      outcome.retryAfter = headers.get('retry-after');
      outcome.error = body.error;
      outcome.active = body.active;
      const value = body.access_token as string | undefined;
      if (value !== undefined) {
        outcome.token = kind === 'opaque'
          ? { id: sha256(value), event: 'token.issued' }
          : { id: decodeJwt(value).jti!, event: kind === 'exchange' ? 'token.exchanged' : 'token.issued' };
      }
    } catch (error) {
      outcome.failure = String(error);
    }
    outcome.endedAt = performance.now();
  }

  const ticking = (async () => {
    for (let n = 0; !stopping; n += 1) {
      running.push(one(KINDS[n % KINDS.length]!));
      await sleep(intervalMs);
    }
  })();

  return {
    outcomes,
    async stop() {
      stopping = true;
      await ticking;
      await Promise.all(running);
      return outcomes;
    },
  };
}

/** Polls until `condition` holds, at most `timeoutMs` (the assertions after it say what was missing). */
export async function until(condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition() && performance.now() < deadline) await sleep(20);
}

export const delivered = (outcomes: Outcome[], after = 0) => outcomes.filter((outcome) => outcome.startedAt > after && outcome.token !== undefined).length;

/** What every answer must be: a token path / introspection / readiness success, or 503 + Retry-After + temporarily_unavailable. */
export function unexpectedAnswers(outcomes: Outcome[]): Outcome[] {
  return outcomes.filter((outcome) => {
    if (outcome.failure !== undefined || outcome.status === undefined) return true;
    if (outcome.status === 200) {
      if (outcome.kind === 'readyz') return false;
      if (outcome.kind === 'introspect') return outcome.active !== true;
      return outcome.token === undefined;
    }
    if (outcome.status !== 503 || outcome.retryAfter !== '1' || outcome.token !== undefined) return true;
    return outcome.kind !== 'readyz' && outcome.error !== 'temporarily_unavailable';
  });
}

/** Delivered tokens whose issuance event is not committed (read over a connection that does not go through the proxy). */
export async function unrecordedTokens(knex: Knex, outcomes: Outcome[]): Promise<string[]> {
  const tokens = outcomes.flatMap((outcome) => (outcome.token ? [outcome.token] : []));
  const recorded = new Set<string>();
  for (let offset = 0; offset < tokens.length; offset += 500) {
    const rows = await knex('ledger_events').whereIn('token_id', tokens.slice(offset, offset + 500).map((token) => token.id))
      .whereIn('type', ['token.issued', 'token.exchanged']).select('token_id', 'type');
    for (const row of rows) recorded.add(`${row.type as string} ${row.token_id as string}`);
  }
  return tokens.filter((token) => !recorded.has(`${token.event} ${token.id}`)).map((token) => token.id);
}

export function summary(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) {
    const key = `${outcome.kind} ${outcome.status ?? 'none'}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

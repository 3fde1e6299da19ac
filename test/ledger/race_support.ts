import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { Knex } from 'knex';
import { pino } from 'pino';
import { closeListener, listenHttps } from '../../src/http/listeners.js';
import { createTetherApp } from '../../src/http/tether_app.js';
import { resumeClient, suspendClient } from '../../src/ledger/client_states.js';
import { tokenStateOf } from '../../src/ledger/events.js';
import { tokenLineage } from '../../src/ledger/inventory_queries.js';
import { openDatabase } from '../../src/storage/database.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { postForm, type TokenResponse } from '../support/tether.js';
import { ARCHIVE, INVOICES, LedgerClient, ORDERS } from './ledger_config.js';

/**
 * The revocation race of issue 13: a burst of concurrent exchanges of one subject token with the
 * subject's revocation (or a suspension) committed in the middle of it. A round reports what a
 * demanding operator would check afterwards; the tests assert every count is zero.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const facts = { requestId: 'race-test', sourceAddress: undefined, instanceId: 'race-test' };

export const BURST = 16;

/** What cuts the lineage mid-burst. */
export type Cut = 'revoke-subject' | 'suspend-exchanging-client' | 'suspend-subject-client';

/** One Tether instance as the test talks to it: HTTP endpoints and its own database pool. */
export interface Instance {
  client: LedgerClient;
  knex: Knex;
}

export interface RoundOutcome {
  statuses: Record<string, number>;
  /** Children answered 200 whose token.exchanged event is not committed. */
  unrecorded: number;
  /** Children introspected `active: true` after the cut committed. */
  liveByIntrospection: number;
  /** Children still accepted as a subject token after the cut. */
  exchangeable: number;
  /** Tokens of the lineage the ledger still counts as active (the subject included, when the cut revokes it). */
  liveInLedger: number;
  /** Refusals that are not the precise OAuth error of the cut, or that left no request.rejected event. */
  imprecise: number;
  /** Exchanges answered 200 (children delivered). */
  children: number;
}

const jtiOf = (token: string) => decodeJwt(token).jti!;
export const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

function exchangeRequest(instance: Instance, clientId: string, subjectToken: string, resource: string): Promise<TokenResponse> {
  return postForm(instance.client.tether.tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, resource,
  }, { dispatcher: instance.client.agent(clientId) });
}

/** The OAuth error a refused exchange must carry for each cut. */
const EXPECTED_REFUSAL: Record<Cut, { error: string; error_description: string }> = {
  'revoke-subject': { error: 'invalid_grant', error_description: 'subject_token is invalid, expired, revoked, or not acceptable for this client' },
  'suspend-subject-client': { error: 'invalid_grant', error_description: 'subject_token is invalid, expired, revoked, or not acceptable for this client' },
  'suspend-exchanging-client': { error: 'unauthorized_client', error_description: 'the client may not obtain tokens at this time' },
};

async function cutLineage(cut: Cut, control: Instance, subject: string): Promise<void> {
  const cause = { actor: 'cli:race-test', reason: 'race drill' };
  if (cut === 'revoke-subject') {
    const { status } = await control.client.revokeAs('worker', subject);
    if (status !== 200) throw new Error(`revocation answered ${status}`);
  } else {
    await suspendClient(control.knex, cut === 'suspend-exchanging-client' ? 'orders-api' : 'worker', cause, facts);
  }
}

async function restore(cut: Cut, control: Instance): Promise<void> {
  if (cut === 'revoke-subject') return;
  await resumeClient(control.knex, cut === 'suspend-exchanging-client' ? 'orders-api' : 'worker', { actor: 'cli:race-test', reason: 'drill over' }, facts);
}

/**
 * One round: a fresh subject token, BURST concurrent exchanges of it on `exchanges`, and the cut on
 * `control` once `cutAfter` of the exchanges have answered (0: as they start). Then every check.
 */
export async function raceRound(cut: Cut, exchanges: Instance, control: Instance, cutAfter: number): Promise<RoundOutcome> {
  const subject = await exchanges.client.accessToken('worker', ORDERS);
  let answered = 0;
  let releaseCut!: () => void;
  const cutSignal = new Promise<void>((resolve) => {
    releaseCut = resolve;
  });
  if (cutAfter === 0) releaseCut();
  const burst = Array.from({ length: BURST }, () => exchangeRequest(exchanges, 'orders-api', subject, INVOICES).then((response) => {
    answered += 1;
    if (answered === cutAfter) releaseCut();
    return response;
  }));
  const cutDone = cutSignal.then(() => cutLineage(cut, control, subject));
  const responses = await Promise.all(burst);
  await cutDone;

  const outcome: RoundOutcome = { statuses: {}, unrecorded: 0, liveByIntrospection: 0, exchangeable: 0, liveInLedger: 0, imprecise: 0, children: 0 };
  const children: string[] = [];
  for (const response of responses) {
    const key = `${response.status}${response.body.error ? ` ${String(response.body.error)}` : ''}`;
    outcome.statuses[key] = (outcome.statuses[key] ?? 0) + 1;
    if (response.status === 200) {
      children.push(response.body.access_token as string);
      continue;
    }
    const expected = EXPECTED_REFUSAL[cut];
    const rejection = await control.knex('ledger_events').where({ type: 'request.rejected', request_id: response.headers.get('x-request-id') }).first();
    const precise = response.status === 400 && response.body.error === expected.error && response.body.error_description === expected.error_description
      && response.body.access_token === undefined && rejection?.details?.error === expected.error;
    if (!precise) outcome.imprecise += 1;
  }
  outcome.children = children.length;

  for (const child of children) {
    const event = await control.knex('ledger_events').where({ type: 'token.exchanged', token_id: jtiOf(child) }).first();
    if (!event) outcome.unrecorded += 1;
    const introspection = await control.client.introspectAs('invoices-api', child);
    if (introspection.body.active !== false) outcome.liveByIntrospection += 1;
    const again = await exchangeRequest(exchanges, 'invoices-api', child, ARCHIVE);
    if (again.status === 200 || again.status >= 500) outcome.exchangeable += 1;
  }

  const lineage = await tokenLineage(control.knex, jtiOf(subject));
  const [subjectRow] = await control.knex('issued_tokens').where({ token_id: jtiOf(subject) });
  const now = new Date();
  const live = (row: { revoked_at: Date | null; expires_at: Date }) => tokenStateOf({ revokedAt: row.revoked_at ?? undefined, expiresAt: row.expires_at }, now) === 'active';
  outcome.liveInLedger = lineage.descendants.filter((token) => tokenStateOf(token, now) === 'active').length
    + (cut !== 'suspend-exchanging-client' && live(subjectRow) ? 1 : 0);

  await restore(cut, control);
  return outcome;
}

export interface RaceSummary {
  rounds: number;
  children: number;
  statuses: Record<string, number>;
  unrecorded: number;
  liveByIntrospection: number;
  exchangeable: number;
  liveInLedger: number;
  imprecise: number;
}

/** Runs rounds until `maxRounds` or `deadlineMs` (a loaded machine runs fewer, never slower-is-red). */
export async function raceRounds(cut: Cut, exchanges: Instance, control: Instance, options: { maxRounds: number; deadlineMs: number }): Promise<RaceSummary> {
  const summary: RaceSummary = { rounds: 0, children: 0, statuses: {}, unrecorded: 0, liveByIntrospection: 0, exchangeable: 0, liveInLedger: 0, imprecise: 0 };
  const deadline = performance.now() + options.deadlineMs;
  while (summary.rounds < options.maxRounds && (summary.rounds < 3 || performance.now() < deadline)) {
    // Vary where the cut lands: as the burst starts, or after the first few answers.
    const outcome = await raceRound(cut, exchanges, control, summary.rounds % 5);
    summary.rounds += 1;
    summary.children += outcome.children;
    for (const [status, count] of Object.entries(outcome.statuses)) summary.statuses[status] = (summary.statuses[status] ?? 0) + count;
    summary.unrecorded += outcome.unrecorded;
    summary.liveByIntrospection += outcome.liveByIntrospection;
    summary.exchangeable += outcome.exchangeable;
    summary.liveInLedger += outcome.liveInLedger;
    summary.imprecise += outcome.imprecise;
  }
  return summary;
}

/**
 * A second Tether instance on the same PostgreSQL database: its own pool, its own oidc-provider and
 * batcher, the same configuration (issuer included, as behind a load balancer), certificates from the
 * first one's PKI.
 */
export async function startSecondInstance(first: RunningTether, url: string): Promise<{ instance: Instance; close(): Promise<void> }> {
  const database = await openDatabase({ url });
  let app: Awaited<ReturnType<typeof createTetherApp>> | undefined;
  try {
    app = await createTetherApp({ config: first.config, database, logger: pino({ level: 'silent' }), clientCaPem: first.pki.ca.certificatePem });
    const listener = await listenHttps(app.callback, { host: '127.0.0.1', port: 0 }, {
      certPem: first.pki.server.certificatePem, keyPem: first.pki.server.privateKeyPem, clientCaPem: first.pki.ca.certificatePem,
    });
    const view = { ...first, issuer: listener.origin, tokenEndpoint: `${listener.origin}/token` } as RunningTether;
    const client = new LedgerClient(view);
    return {
      instance: { client, knex: database.knex },
      async close() {
        await closeListener(listener, 0);
        // The app owns timers and a LISTEN connection (live signing keys): left open, they outlive the test file.
        await app!.close();
        await database.close();
      },
    };
  } catch (error) {
    await app?.close();
    await database.close();
    throw error;
  }
}

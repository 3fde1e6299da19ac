import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { Logger } from 'pino';
import { appendEvent, type LedgerEventInput } from './append_event.js';
import type { RequestFacts } from './events.js';
import type { RejectionAggregator, RejectionKind } from './rejection_aggregator.js';

/**
 * Every refused request to the token, introspection or revocation endpoint leaves a
 * `request.rejected` event with the public error and the private reason.
 *
 * oidc-provider reports a route's error through an event ('grant.error', …) that it does not await,
 * so a listener only remembers the error on the request (`ctx.state`); the ledger write happens in
 * {@link recordRejections}, a middleware that awaits it after the route has answered.
 *
 * A refusal of an authenticated client gets its own row. A refusal nobody authenticated for (no
 * client, a client that failed authentication, a request refused before oidc-provider) goes through
 * the rejection aggregator: the first of its kind in a window gets its own row, the others one row
 * with a count (ledger/rejection_aggregator.ts). Attacker-chosen strings are cut short either way.
 */

/** What the rejection event records beyond the request's parameters. */
export interface Rejection {
  error: Error & { error?: string; error_description?: string; error_detail?: string; status?: number };
  /** Facts about the presented token, when the endpoint knew them (introspection, revocation); its holder goes to details.token_client_id. */
  token?: Pick<LedgerEventInput, 'tokenId' | 'tokenFormat' | 'clientId' | 'resource'>;
}

/** The request's refusal travels in koa's per-request `ctx.state`, under this one name. */
interface RejectionState {
  tetherRejection?: Rejection;
}

function rejectionStateOf(ctx: Pick<Context, 'state'>): RejectionState {
  return ctx.state as RejectionState;
}

export function rememberRejection(ctx: Pick<Context, 'state'>, rejection: Rejection): void {
  rejectionStateOf(ctx).tetherRejection = rejection;
}

export function rememberedRejection(ctx: Pick<Context, 'state'>): Rejection | undefined {
  return rejectionStateOf(ctx).tetherRejection;
}

export function forgetRejection(ctx: Pick<Context, 'state'>): void {
  delete rejectionStateOf(ctx).tetherRejection;
}

const ERROR_EVENTS = ['grant.error', 'introspection.error', 'revocation.error', 'server_error'] as const;

/** Remembers oidc-provider's errors on the request they belong to (synchronously: nothing else). */
export function listenForRejections(provider: Provider): void {
  for (const name of ERROR_EVENTS) {
    (provider.on as (event: string, listener: (ctx: KoaContextWithOIDC, error: Rejection['error']) => void) => Provider)(
      name,
      (ctx, error) => rememberRejection(ctx, { error }),
    );
  }
}

export type LedgerRoute = 'token' | 'introspection' | 'revocation';
const LEDGER_ROUTES: readonly LedgerRoute[] = ['token', 'introspection', 'revocation'];

/**
 * The endpoint a request was for: oidc-provider's route name, or, for a request refused before it
 * reached oidc-provider (e.g. a malformed certificate header), the route whose path it asked for.
 */
export function ledgerRouteOf(ctx: Context, provider: Provider): LedgerRoute | undefined {
  const route = (ctx as KoaContextWithOIDC).oidc?.route;
  if (route) return LEDGER_ROUTES.find((name) => name === route);
  if (ctx.method !== 'POST') return undefined;
  return LEDGER_ROUTES.find((name) => provider.pathFor(name) === ctx.path);
}

/** Attacker-chosen strings are recorded, but bounded (a rejection row stays well under 1 KB). */
function bounded(value: unknown, length = 128): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

function boundedList(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.slice(0, 4).map((item) => bounded(item, 64) ?? '') : undefined;
}

/**
 * oidc-provider's client authentication can refuse with invalid_request after it has found the
 * client (lib/shared/client_auth.js); that client is named, not authenticated.
 */
const CLIENT_AUTHENTICATION_REFUSALS = new Set(['client authentication must only be provided using one mechanism']);

/** Whether the refused request came from a client oidc-provider authenticated. */
function wasAuthenticated(ctx: Context, rejection: Rejection | undefined, publicError: string): boolean {
  if (!(ctx as KoaContextWithOIDC).oidc?.client) return false;
  if (publicError === 'invalid_client') return false;
  return !CLIENT_AUTHENTICATION_REFUSALS.has(rejection?.error?.error_description ?? '');
}

/** A refusal as the ledger records it: its row, whether an authenticated client made it, and its kind. */
export interface RecordedRejection {
  event: LedgerEventInput;
  authenticated: boolean;
  kind: Omit<RejectionKind, 'sourceAddress'>;
}

/** The `request.rejected` event for a refused request: public error, private reason, what was asked. */
export function rejectionOf(ctx: Context, route: LedgerRoute, rejection: Rejection | undefined): RecordedRejection {
  const oidc = (ctx as KoaContextWithOIDC).oidc;
  const params = (oidc?.params ?? {}) as Record<string, unknown>;
  const body = (typeof ctx.body === 'object' && ctx.body !== null ? ctx.body : {}) as Record<string, unknown>;
  const error = rejection?.error;
  const publicError = bounded(body.error, 64) ?? error?.error ?? 'server_error';
  // error_detail: Tether's and oidc-provider's private reason; a server error's message is private too.
  const reason = bounded(error?.error_detail ?? (error && !error.error ? error.message : undefined) ?? body.error_description, 512);
  // A client oidc-provider found is registered; any other claimed id is only a string the caller sent.
  const clientId = oidc?.client?.clientId;
  const event: LedgerEventInput = {
    type: 'request.rejected',
    // The client that asked (as it claimed to be, if it failed authentication).
    clientId: clientId ?? bounded(params.client_id, 64),
    resource: rejection?.token?.resource ?? bounded(params.resource),
    scope: bounded(params.scope),
    tokenId: rejection?.token?.tokenId,
    tokenFormat: rejection?.token?.tokenFormat,
    details: {
      route,
      status: ctx.status,
      error: publicError,
      error_description: bounded(body.error_description),
      reason,
      grant_type: bounded(params.grant_type, 64),
      resources: boundedList(params.resource),
      token_type_hint: bounded(params.token_type_hint, 64),
      token_client_id: rejection?.token?.clientId,
    },
  };
  return {
    event,
    authenticated: wasAuthenticated(ctx, rejection, publicError),
    kind: { route, status: ctx.status, error: publicError, clientId, reason },
  };
}

/**
 * Writes the `request.rejected` event of every refused ledger-route request, after the route has
 * answered. A failure to write it is logged and never changes the answer (a 400 stays a 400).
 * The answer waits for the write at most `maxWaitMs` (default 3 s; config database.acquireTimeout):
 * when the database is frozen, the 503 that says so is not held back by its own record, which is
 * written (or fails, logged) once the database answers or its timeouts expire.
 */
export function recordRejections(deps: {
  knex: Knex;
  provider: Provider;
  logger: Logger;
  requestFactsOf(ctx: Context): RequestFacts;
  /** Where refusals nobody authenticated for go (bounded cost). */
  unauthenticated: RejectionAggregator;
  /** Longest an answer waits for its rejection's write (the database may be frozen). */
  maxWaitMs?: number;
}) {
  const maxWaitMs = deps.maxWaitMs ?? 3000;
  return async function recordRejectionsMiddleware(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
    } catch (error) {
      // Escaped every handler: the outer middleware answers 500; record it as that.
      rememberRejection(ctx, { error: error as Rejection['error'] });
      ctx.status = 500;
      await recordIfLedgerRoute(ctx);
      throw error;
    }
    if (ctx.status >= 400) await recordIfLedgerRoute(ctx);
  };

  async function recordIfLedgerRoute(ctx: Context): Promise<void> {
    const route = ledgerRouteOf(ctx, deps.provider);
    if (!route) return;
    const facts = deps.requestFactsOf(ctx);
    const status = ctx.status;
    const written = (async () => {
      const { event, authenticated, kind } = rejectionOf(ctx, route, rememberedRejection(ctx));
      if (authenticated) await appendEvent(deps.knex, event, facts);
      else await deps.unauthenticated.record({ ...kind, sourceAddress: facts.sourceAddress }, event, facts);
    })().catch((error: unknown) => {
      deps.logger.error({ err: error, requestId: facts.requestId, route, status }, 'could not record a rejected request in the ledger');
    });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, maxWaitMs);
    });
    await Promise.race([written, waited]);
    clearTimeout(timer);
  }
}

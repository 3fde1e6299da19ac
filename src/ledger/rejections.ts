import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { Logger } from 'pino';
import { appendEvent, type LedgerEventInput } from './append_event.js';
import type { RequestFacts } from './events.js';

/**
 * Every refused request to the token, introspection or revocation endpoint leaves a
 * `request.rejected` event with the public error and the private reason.
 *
 * oidc-provider reports a route's error through an event ('grant.error', …) that it does not await,
 * so a listener only remembers the error for the request; the ledger write happens in
 * {@link recordRejections}, a middleware that awaits it after the route has answered.
 */

/** What the rejection event records beyond the request's parameters. */
export interface Rejection {
  error: Error & { error?: string; error_description?: string; error_detail?: string; status?: number };
  /** Facts about the presented token, when the endpoint knew them (introspection, revocation); its holder goes to details.token_client_id. */
  token?: Pick<LedgerEventInput, 'tokenId' | 'tokenFormat' | 'clientId' | 'resource'>;
}

const rejections = new WeakMap<object, Rejection>();

export function rememberRejection(ctx: object, rejection: Rejection): void {
  rejections.set(ctx, rejection);
}

export function rememberedRejection(ctx: object): Rejection | undefined {
  return rejections.get(ctx);
}

export function forgetRejection(ctx: object): void {
  rejections.delete(ctx);
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

/** Attacker-chosen strings are recorded, but bounded. */
function bounded(value: unknown, length = 256): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

function boundedList(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.slice(0, 8).map((item) => bounded(item) ?? '') : undefined;
}

/** The `request.rejected` event for a refused request: public error, private reason, what was asked. */
export function rejectionEventOf(ctx: Context, route: LedgerRoute, rejection: Rejection | undefined): LedgerEventInput {
  const oidc = (ctx as KoaContextWithOIDC).oidc;
  const params = (oidc?.params ?? {}) as Record<string, unknown>;
  const body = (typeof ctx.body === 'object' && ctx.body !== null ? ctx.body : {}) as Record<string, unknown>;
  const error = rejection?.error;
  const publicError = bounded(body.error) ?? error?.error ?? 'server_error';
  // error_detail: Tether's and oidc-provider's private reason; a server error's message is private too.
  const reason = error?.error_detail ?? (error && !error.error ? error.message : undefined) ?? bounded(body.error_description);
  return {
    type: 'request.rejected',
    // The client that asked (as it claimed to be, if it failed authentication).
    clientId: oidc?.client?.clientId ?? bounded(params.client_id),
    resource: rejection?.token?.resource ?? bounded(params.resource),
    scope: bounded(params.scope),
    tokenId: rejection?.token?.tokenId,
    tokenFormat: rejection?.token?.tokenFormat,
    details: {
      route,
      status: ctx.status,
      error: publicError,
      error_description: bounded(body.error_description),
      reason: bounded(reason, 1024),
      grant_type: bounded(params.grant_type),
      resources: boundedList(params.resource),
      token_type_hint: bounded(params.token_type_hint),
      token_client_id: rejection?.token?.clientId,
    },
  };
}

/**
 * Writes the `request.rejected` event of every refused ledger-route request, after the route has
 * answered. A failure to write it is logged and never changes the answer (a 400 stays a 400).
 * The answer waits for the write at most `maxWaitMs` (default 3 s; config database.acquireTimeout):
 * when the database is frozen, the 503 that says so is not held back by its own record, which is
 * written (or fails, logged) once the database answers or its timeouts expire.
 */
export function recordRejections(deps: { knex: Knex; provider: Provider; logger: Logger; requestFactsOf(ctx: Context): RequestFacts; maxWaitMs?: number }) {
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
    const written = appendEvent(deps.knex, rejectionEventOf(ctx, route, rememberedRejection(ctx)), facts).catch((error: unknown) => {
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

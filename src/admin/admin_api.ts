import { PassThrough, Writable } from 'node:stream';
import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { TetherConfig } from '../config/schema.js';
import type { CommandContext } from '../cli/inventory_output.js';
import { appendEvent } from '../ledger/append_event.js';
import type { RequestFacts } from '../ledger/events.js';
import type { RejectionAggregator } from '../ledger/rejection_aggregator.js';
import type { AdminAuthentication, AdminCaller } from './authenticate.js';
import { operationErrorOf, OperationError } from './operation_error.js';
import type { AdminOperation, OperationInput } from './operations.js';

/**
 * The admin API, served under `admin.path` + `/api` on Tether's listeners (docs/admin.md). Order:
 * authenticate (nothing, not even "no such route", is told to an unauthenticated caller), match the
 * operation, read its input, run it, record the call as an `admin.called` event, answer. A call is
 * answered only after its event is written (a ledger that cannot be written is a 503).
 */

export interface AdminApiOptions {
  /** The configuration at start: `admin` and `http` change only with a restart. */
  config: TetherConfig;
  /** The configuration a request starting now runs with (clients and resources follow a reload). */
  currentConfig(ctx: Context): TetherConfig;
  knex: Knex;
  logger: Logger;
  authenticate(ctx: Context): Promise<AdminAuthentication>;
  requestFactsOf(ctx: Context): RequestFacts;
  unauthenticated: RejectionAggregator;
  /** Aborted when the app closes: streams end. */
  closing: AbortSignal;
}

/** The caller's own name for itself (e.g. the CLI's `cli:alice@host`): recorded next to the authenticated actor, never instead of it. */
const ON_BEHALF = /^[\w.:@+-]{1,128}$/;

export function adminApi(options: AdminApiOptions) {
  const prefix = `${options.config.admin.path}/api`;
  return async function adminApiMiddleware(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) return next();
    ctx.set('Cache-Control', 'no-store');
    const authentication = await options.authenticate(ctx);
    if (!authentication.ok) {
      await recordRefusal(ctx, options, authentication);
      ctx.status = authentication.status;
      for (const [name, value] of Object.entries(authentication.headers)) ctx.set(name, value as string | string[]);
      ctx.body = authentication.body;
      return;
    }
    await answer(ctx, options, authentication.caller, ctx.path.slice(prefix.length));
  };
}

async function recordRefusal(ctx: Context, options: AdminApiOptions, refusal: Extract<AdminAuthentication, { ok: false }>): Promise<void> {
  const facts = options.requestFactsOf(ctx);
  // Counted per kind and window like every unauthenticated refusal: a flood costs a few rows.
  await options.unauthenticated.record(
    { sourceAddress: facts.sourceAddress, route: 'admin', status: refusal.status, error: refusal.body.error, clientId: undefined, reason: refusal.reason },
    { type: 'request.rejected', details: { route: 'admin', status: refusal.status, error: refusal.body.error, reason: refusal.reason } },
    facts,
  ).catch((error: unknown) => options.logger.warn({ err: error }, 'admin refusal not recorded'));
}

function actorOf(ctx: Context, caller: AdminCaller): string {
  const claimed = ctx.get('x-tether-actor');
  return ON_BEHALF.test(claimed) ? `${caller.actor} (${claimed})` : caller.actor;
}

function commandContextOf(ctx: Context, options: AdminApiOptions, caller: AdminCaller, out: NodeJS.WritableStream): CommandContext {
  return { knex: options.knex, config: options.currentConfig(ctx), out, actor: actorOf(ctx, caller), facts: options.requestFactsOf(ctx) };
}

async function answer(ctx: Context, options: AdminApiOptions, caller: AdminCaller, subpath: string): Promise<void> {
  const called = { operation: 'unknown', input: {} as OperationInput };
  const record = (status: number) => appendEvent(options.knex, {
    type: 'admin.called',
    clientId: caller.clientId,
    actor: actorOf(ctx, caller),
    details: { operation: called.operation, method: ctx.method, path: ctx.path, status, via: caller.via, input: called.input },
  }, options.requestFactsOf(ctx));

  let operation: AdminOperation;
  let params: string[];
  try {
    // The operations and the command code they run load at the first authenticated call, not at start.
    const { matchOperation } = await import('./operations.js');
    const matched = matchOperation(ctx.method, subpath);
    if (matched === undefined) throw new OperationError(404, 'no such admin operation');
    if (matched === 'method') {
      ctx.set('Allow', ctx.method === 'GET' ? 'POST' : 'GET');
      await record(405);
      respondError(ctx, 405, 'method not allowed');
      return;
    }
    ({ operation, params } = matched);
    called.operation = operation.name;
    called.input = await inputOf(ctx, operation, options.config.http.maxBodySize);
    operation.check?.(called.input);
  } catch (error) {
    const refusal = operationErrorOf(error);
    if (!refusal) throw error;
    await record(refusal.status);
    respondError(ctx, refusal.status, refusal.message);
    return;
  }
  const json = called.input.format !== 'text';
  const input = called.input;
  if (operation.streams?.(input)) {
    await record(200);
    streamAnswer(ctx, options, caller, operation, params, input, json);
    return;
  }
  const chunks: Buffer[] = [];
  const out = new Writable({ write(chunk: Buffer, _encoding, done) { chunks.push(Buffer.from(chunk)); done(); } });
  try {
    await operation.run({ context: commandContextOf(ctx, options, caller, out), params, input, json, signal: options.closing, caller });
  } catch (error) {
    const refusal = operationErrorOf(error);
    if (!refusal) throw error;
    await record(refusal.status);
    respondError(ctx, refusal.status, refusal.message);
    return;
  }
  await record(200);
  ctx.status = 200;
  ctx.type = json ? 'application/json' : 'text/plain; charset=utf-8';
  ctx.body = Buffer.concat(chunks);
}

/** A stream runs until the caller disconnects or the server stops. Its call is recorded when it opens. */
function streamAnswer(ctx: Context, options: AdminApiOptions, caller: AdminCaller, operation: AdminOperation, params: string[], input: OperationInput, json: boolean): void {
  const out = new PassThrough();
  const stop = new AbortController();
  const abort = () => stop.abort();
  ctx.req.once('close', abort);
  ctx.res.once('close', abort);
  options.closing.addEventListener('abort', abort, { once: true });
  ctx.status = 200;
  ctx.type = operation.eventStream ? 'text/event-stream' : json ? 'application/x-ndjson' : 'text/plain; charset=utf-8';
  ctx.set('X-Accel-Buffering', 'no');
  ctx.body = out;
  const context = commandContextOf(ctx, options, caller, out);
  operation.run({ context, params, input, json, signal: stop.signal, caller })
    .catch((error: unknown) => {
      // The status line is sent already: a refusal (bad input) or a failure ends the stream, said in-band for SSE.
      const refusal = operationErrorOf(error);
      if (operation.eventStream) out.write(`event: error\ndata: ${JSON.stringify({ error: refusal?.message ?? 'the stream ended' })}\n\n`);
      if (!refusal) options.logger.warn({ err: error }, 'admin stream ended by an error');
    })
    .finally(() => {
      options.closing.removeEventListener('abort', abort);
      out.end();
    });
}

function respondError(ctx: Context, status: number, description: string): void {
  ctx.status = status;
  ctx.body = { error: status === 404 ? 'not_found' : status === 405 ? 'method_not_allowed' : 'invalid_request', error_description: description };
}

/** Query (GET) or JSON object body (POST): string values only, names the operation accepts plus `format`. */
async function inputOf(ctx: Context, operation: AdminOperation, maxBodySize: number): Promise<OperationInput> {
  const raw: Record<string, unknown> = operation.method === 'GET' ? { ...ctx.query } : await jsonBodyOf(ctx, maxBodySize);
  const accepted = new Set([...operation.accepts, 'format']);
  const input: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (!accepted.has(name)) throw new OperationError(400, `unknown parameter ${JSON.stringify(name)}; ${operation.name} takes ${[...accepted].join(', ')}`);
    if (typeof value !== 'string') throw new OperationError(400, `${name} must be a single string`);
    input[name] = value;
  }
  if (input.format !== undefined && input.format !== 'json' && input.format !== 'text') throw new OperationError(400, 'format must be json or text');
  return input;
}

async function jsonBodyOf(ctx: Context, maxBodySize: number): Promise<Record<string, unknown>> {
  const declared = ctx.request.length;
  if (declared !== undefined && declared > maxBodySize) throw new OperationError(400, `the request body is larger than ${maxBodySize} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodySize) {
      ctx.set('Connection', 'close');
      throw new OperationError(400, `the request body is larger than ${maxBodySize} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  if (!ctx.is('application/json')) throw new OperationError(400, 'the request body must be application/json');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new OperationError(400, 'the request body is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new OperationError(400, 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

import type { Knex } from 'knex';
import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';
import type { Logger } from 'pino';
import type { TetherConfig } from '../config/schema.js';
import type { LoadedSigningKeys } from '../keys/signing_keys.js';
import { accessLog } from './access_log.js';
import { labelVocabulary, type KnownNames } from './metric_labels.js';
import type { TetherMetrics } from './metrics.js';
import { metricsEndpoint } from './metrics_endpoint.js';
import { tokenMetrics } from './token_metrics.js';

type Middleware = (ctx: Context, next: Next) => Promise<void>;

/** What the app hands to its observers. */
export interface ObservedApp {
  config: Pick<TetherConfig, 'metrics'>;
  logger: Logger;
  provider: Provider;
  knex: Knex;
  /** The client ids and resource URIs of the configuration the request ran with. */
  knownNamesOf(ctx: Context): KnownNames;
  issuanceQueue(): { waiting: number; inFlight: number };
  signingKeys(): LoadedSigningKeys;
  /** The request's id and client address (http/middleware.ts requestFactsOf). */
  factsOf(ctx: Context): { requestId: string; sourceAddress: string | undefined };
}

/**
 * The observability of one app, as pieces of its middleware list (http/tether_app.ts):
 * - `outermost`: the access line and the request counters, before every other middleware, so that
 *   they see the status the client was actually sent;
 * - `besideHealth`: `/metrics` on a shared listener (`metrics.listener: http | https`), answered
 *   like the health endpoints, before the served-origin check;
 * - `metrics`: the registry and the issuance histogram (`timedGrant`), undefined when metrics are off.
 */
export async function requestObservers(app: ObservedApp): Promise<{ metrics: TetherMetrics | undefined; outermost: Middleware[]; besideHealth: Middleware[] }> {
  const { listener, path } = app.config.metrics;
  // prom-client (and the OpenTelemetry API it loads) only when metrics are on: the default is off.
  const metrics = listener === 'off' ? undefined : (await import('./metrics.js')).createTetherMetrics(app);
  const labelsOf = (ctx: Context) => labelVocabulary(app.knownNamesOf(ctx));
  return {
    metrics,
    outermost: [
      accessLog(app.logger, { labelsOf, factsOf: app.factsOf }),
      ...(metrics ? [tokenMetrics(metrics, app.provider, { metricsPath: path, labelsOf })] : []),
    ],
    besideHealth: metrics && (listener === 'http' || listener === 'https') ? [metricsEndpoint(metrics.registry, path, listener)] : [],
  };
}

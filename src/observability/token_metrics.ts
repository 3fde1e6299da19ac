import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';
import { ledgerRouteOf, rememberedRejection } from '../ledger/rejections.js';
import type { LabelVocabulary } from './metric_labels.js';
import type { TetherMetrics } from './metrics.js';
import { summarizeRequest } from './request_summary.js';

/**
 * Counts every answered request (`tether_http_request_duration_seconds`) and, for the token
 * endpoint, each token issued or refused with its grant, client, resource and OAuth error, in the
 * bounded label values of metric_labels.ts. Installed outside every other middleware, so that it
 * counts the status the client was actually sent (a refusal answered before oidc-provider too).
 */
export function tokenMetrics(metrics: TetherMetrics, provider: Provider, options: { metricsPath: string; labelsOf(ctx: Context): LabelVocabulary }) {
  // Routes outside oidc-provider, by path; any other path is `other` (a scan adds no series).
  const ownRoutes = new Map([['/healthz', 'healthz'], ['/readyz', 'readyz'], [options.metricsPath, 'metrics']]);
  return async function tokenMetricsMiddleware(ctx: Context, next: Next): Promise<void> {
    const started = performance.now();
    try {
      await next();
    } finally {
      countRequest(ctx, metrics, provider, { ownRoutes, labels: options.labelsOf(ctx) }, (performance.now() - started) / 1000);
    }
  };
}

function countRequest(
  ctx: Context, metrics: TetherMetrics, provider: Provider, words: { ownRoutes: ReadonlyMap<string, string>; labels: LabelVocabulary }, seconds: number,
): void {
  const { ownRoutes } = words;
  const summary = summarizeRequest(ctx, words.labels);
  const route = ledgerRouteOf(ctx, provider) ?? summary.route ?? ownRoutes.get(ctx.path) ?? 'other';
  metrics.requestDuration.observe({ route, status: String(ctx.status) }, seconds);
  if (route !== 'token' || ctx.method !== 'POST') return;
  if (ctx.status === 200) {
    metrics.tokensIssued.inc({ grant: summary.grant, client: summary.client, resource: summary.resource });
    return;
  }
  metrics.tokensRefused.inc({ grant: summary.grant, client: summary.client, resource: summary.resource, error: summary.error });
  if (isDpopReplay(ctx)) metrics.dpopReplays.inc();
}

/**
 * The token path refuses a replayed proof with this private detail (binding/dpop.ts
 * replayedProofRefusal); test/observability/metrics.test.ts replays a proof and reads the counter.
 */
function isDpopReplay(ctx: Context): boolean {
  const error = rememberedRejection(ctx)?.error;
  return error?.error === 'invalid_dpop_proof' && (error.error_detail ?? '').startsWith('replayed DPoP proof');
}

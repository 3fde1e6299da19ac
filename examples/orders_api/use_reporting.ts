/**
 * The orders API tells Tether what its verifier saw (docs/use-reports.md): every accepted and
 * refused presentation, in batches, off the request path. The reporter authenticates as the API's
 * own client (orders-api) with a certificate-bound token for Tether's use-report resource, got and
 * cached by `tether-oauth-client`; the endpoint is discovered from Tether's metadata
 * (`tether_use_report_endpoint`).
 */
import { fetch } from 'undici';
import type { TokenClient } from '../../packages/client/src/index.js';
import { createUseReporter, type FetchLike, type UseReporter } from '../../src/resource_server/index.js';
import { ORDERS_RESOURCE, USE_REPORTS_RESOURCE } from './example_config.js';

/** Options of {@link createOrdersUseReporter}. */
export interface OrdersUseReporterOptions {
  /** Tether's issuer URL. */
  readonly issuer: string;
  /** The API's own client (orders-api), e.g. `createTokenClient({ clientId: 'orders-api', auth: { method: 'tls_client_auth' }, … })`. */
  readonly client: TokenClient;
  /** How often queued events are sent (default 5 s). */
  readonly flushIntervalMs?: number;
}

/** A reporter for the orders API; give it to the verifier (`useReporter`) and close it when the API stops. */
export function createOrdersUseReporter(options: OrdersUseReporterOptions): UseReporter {
  const { client } = options;
  // The client's dispatcher trusts Tether's CA and presents orders-api's certificate (the token is bound to it).
  const overClient = ((input: string, init?: object) => fetch(input, { ...init, dispatcher: client.dispatcher })) as unknown as FetchLike;
  return createUseReporter({
    issuer: options.issuer,
    resource: ORDERS_RESOURCE,
    fetch: overClient,
    authorize: async (request) => client.headersFor(await client.getToken({ resource: USE_REPORTS_RESOURCE, scopes: [] }), request),
    ...(options.flushIntervalMs === undefined ? {} : { flushIntervalMs: options.flushIntervalMs }),
  });
}

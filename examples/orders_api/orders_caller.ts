/**
 * The calling side of the orders API: what a worker that reads and places orders runs, with
 * `tether-oauth-client` getting, caching and presenting its tokens — one per operation's scope,
 * for this API only, bound to the worker's certificate or DPoP key.
 */
import type { TokenClient } from '../../packages/client/src/index.js';
import { ORDERS_RESOURCE } from './example_config.js';

/** An answer of the orders API. */
export interface OrdersAnswer<T> {
  readonly status: number;
  readonly body: T;
}

export interface Order {
  readonly id: number;
  readonly item: string;
  readonly placedBy: string;
}

/** The orders API at `baseUrl` (e.g. `https://localhost:9443`), called as `client`'s service. */
export function createOrdersCaller(client: TokenClient, baseUrl: string) {
  // Each operation asks for exactly the scope it needs; a URL outside `baseUrl` never gets the token.
  const reading = client.fetchFor({ resource: ORDERS_RESOURCE, scopes: ['orders:read'], baseUrl });
  const writing = client.fetchFor({ resource: ORDERS_RESOURCE, scopes: ['orders:write'], baseUrl });
  return {
    async listOrders(): Promise<OrdersAnswer<{ orders: Order[] }>> {
      const response = await reading(`${baseUrl}/orders`);
      return { status: response.status, body: (await response.json()) as { orders: Order[] } };
    },
    async placeOrder(item: string): Promise<OrdersAnswer<Order>> {
      const response = await writing(`${baseUrl}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item }) });
      return { status: response.status, body: (await response.json()) as Order };
    },
  };
}

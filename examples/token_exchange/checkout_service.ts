// The checkout service of docs/client.md: it receives a token from the storefront and calls two
// APIs, forwarding nothing — the orders API with a token of its own, the payments API with a token
// exchanged for the one it received (RFC 8693), bound to its own certificate.
import Koa from 'koa';
import { koaVerifier, type FetchLike } from '../../src/resource_server/index.js';
import { createTokenClient, isClientError } from '../../packages/client/src/index.js';

export const CHECKOUT = 'https://checkout.example.test';
export const ORDERS = 'https://orders.example.test';
export const PAYMENTS = 'https://payments.example.test';

export interface CheckoutOptions {
  /** Tether's issuer URL. */
  issuer: string;
  /** The service's certificate and key (PEM), and the CA that Tether's and the APIs' certificates chain to. */
  tls: { cert: string; key: string; ca: string };
  /** Where the two APIs are. */
  ordersUrl: string;
  paymentsUrl: string;
  /** How the verifier reaches Tether (its JWKS); default: the global fetch. */
  issuerFetch?: FetchLike;
}

export function createCheckoutService(options: CheckoutOptions) {
  const tether = createTokenClient({
    issuer: options.issuer,
    clientId: 'checkout',
    auth: { method: 'tls_client_auth' },
    binding: { method: 'mtls' },
    tls: options.tls,
  });
  // The service's own right: placing orders. Its tokens are for this API and this scope only.
  const orders = tether.fetchFor({ resource: ORDERS, scopes: ['orders:write'], baseUrl: options.ordersUrl });

  const app = new Koa();
  // Tokens for the checkout service itself, bound to the caller's certificate or DPoP key.
  app.use(koaVerifier({ issuer: options.issuer, audience: CHECKOUT, requiredScopes: ['checkout:place'], fetch: options.issuerFetch }));
  app.use(async (ctx) => {
    if (ctx.method !== 'POST' || ctx.path !== '/checkout') {
      ctx.status = 404;
      return;
    }
    const item = String(ctx.query.item ?? 'something');
    // The storefront's token, already verified: it is exchanged, never sent on.
    const received = ctx.get('authorization').replace(/^\S+\s+/, '');
    const payments = tether.fetchExchanged(received, { resource: PAYMENTS, scopes: ['payments:charge'], baseUrl: options.paymentsUrl });
    try {
      const order = await orders(`${options.ordersUrl}/orders`, { method: 'POST', body: JSON.stringify({ item }) });
      const charge = await payments(`${options.paymentsUrl}/charges`, { method: 'POST', body: JSON.stringify({ item }) });
      ctx.status = order.ok && charge.ok ? 201 : 502;
      ctx.body = { order: order.status, charge: charge.status };
    } catch (error) {
      // No token could be had (e.g. the storefront's token was revoked: the exchange is refused).
      if (!isClientError(error)) throw error;
      ctx.status = 502;
      ctx.body = { error: error.code };
    }
  });
  return { app, close: () => tether.close() };
}

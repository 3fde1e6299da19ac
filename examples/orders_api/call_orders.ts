/**
 * Calls the orders API example as `orders-worker`, with tether-oauth-client: lists the orders, then
 * places one. Run Tether and the API first (both from `tether.config.yaml` next to this file):
 *
 *   npx tether dev --config examples/orders_api/tether.config.yaml
 *   node --import tsx examples/orders_api/main.ts
 *   node --import tsx examples/orders_api/call_orders.ts [--url https://localhost:9443] [--item tea]
 *
 * The worker's certificate and Tether's CA come from that configuration's development PKI (a real
 * worker reads them from its deployment).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTokenClient } from '../../packages/client/src/index.js';
import { loadConfigFile } from '../../src/config/load_config.js';
import { ensureDevPki } from '../../src/keys/dev_pki.js';
import { createOrdersCaller } from './orders_caller.js';

const argument = (name: string, fallback: string) => {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : process.argv[index + 1]!;
};

const config = await loadConfigFile(join(dirname(fileURLToPath(import.meta.url)), 'tether.config.yaml'));
const pki = await ensureDevPki({
  directory: join(config.dataDir, 'pki'),
  clientNames: config.clients.filter((client) => client.auth.method === 'tls_client_auth').map((client) => client.id),
});
const worker = pki.clients['orders-worker']!;
const client = createTokenClient({
  issuer: config.issuer,
  clientId: 'orders-worker',
  auth: { method: 'tls_client_auth' },
  binding: { method: 'mtls' },
  tls: { cert: worker.certificatePem, key: worker.privateKeyPem, ca: pki.ca.certificatePem },
});
try {
  const orders = createOrdersCaller(client, argument('--url', 'https://localhost:9443'));
  process.stdout.write(`${JSON.stringify(await orders.listOrders())}\n`);
  process.stdout.write(`${JSON.stringify(await orders.placeOrder(argument('--item', 'tea')))}\n`);
} finally {
  await client.close();
}

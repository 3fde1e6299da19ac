/**
 * Runs the orders API example on https://localhost:9443 (`--port` to change), trusting the Tether of
 * `tether.config.yaml` next to this file:
 *
 *   node --import tsx examples/orders_api/main.ts [--port 9443] [--weaken no-audience-check|no-binding-check|accepts-expired]
 *
 * `--weaken` serves one of the deliberately weakened copies (weakened_copies.ts) instead, to see
 * what `tether probe` reports about it (probe it with a certificate-bound client and `--skip revoked`:
 * the copies do not introspect).
 *
 * The TLS certificate, Tether's CA and the API's own client certificate (for introspection) come
 * from that configuration's development PKI, created on first use exactly as `tether dev` would.
 * (A real API reads them from its deployment; this launcher borrows Tether's internals for that.)
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { createTokenClient } from '../../packages/client/src/index.js';
import { loadConfigFile } from '../../src/config/load_config.js';
import { ensureDevPki } from '../../src/keys/dev_pki.js';
import { ORDERS_RESOURCE } from './example_config.js';
import { fetchTrusting } from './issuer_fetch.js';
import { createOrdersApi } from './orders_api.js';
import { listenOrdersApi } from './server.js';
import { createOrdersUseReporter } from './use_reporting.js';
import { weakenedAuthentication, type Weakness } from './weakened_copies.js';

const configFile = join(dirname(fileURLToPath(import.meta.url)), 'tether.config.yaml');

const argument = (name: string) => {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
};
const port = Number(argument('--port') ?? 9443);
const weakness = argument('--weaken') as Weakness | undefined;

const config = await loadConfigFile(configFile);
const pki = await ensureDevPki({
  directory: join(config.dataDir, 'pki'),
  clientNames: config.clients.filter((client) => client.auth.method === 'tls_client_auth').map((client) => client.id),
});
const issuerFetch = fetchTrusting(pki.ca.certificatePem);
const ownCertificate = pki.clients['orders-api']!;
const introspectionAgent = new Agent({
  connect: { ca: pki.ca.certificatePem, cert: ownCertificate.certificatePem, key: ownCertificate.privateKeyPem },
});

// The API's own client reports its use to Tether (use_reporting.ts).
const ownClient = createTokenClient({
  issuer: config.issuer, clientId: 'orders-api', auth: { method: 'tls_client_auth' }, binding: { method: 'mtls' },
  tls: { cert: ownCertificate.certificatePem, key: ownCertificate.privateKeyPem, ca: pki.ca.certificatePem },
});
const useReporter = createOrdersUseReporter({ issuer: config.issuer, client: ownClient });

const app = createOrdersApi({
  issuer: config.issuer,
  resource: ORDERS_RESOURCE,
  fetch: issuerFetch.fetch,
  introspection: { clientId: 'orders-api', fetchOptions: { dispatcher: introspectionAgent } },
  useReporter,
  ...(weakness ? { authenticate: weakenedAuthentication(weakness, { issuer: config.issuer, resource: ORDERS_RESOURCE, fetch: issuerFetch.fetch }) } : {}),
});
const api = await listenOrdersApi(app, pki.server, { port });
process.stdout.write(`orders API${weakness ? ` (weakened: ${weakness})` : ''} on ${api.origin}/orders — resource ${ORDERS_RESOURCE}, issuer ${config.issuer}\n`);

const stop = () => {
  // The reporter's last batch goes out before its client's connections close.
  void Promise.all([api.close(), useReporter.close()])
    .then(() => Promise.all([issuerFetch.agent.close(), introspectionAgent.close(), ownClient.close()]))
    .then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

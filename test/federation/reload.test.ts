import { parseConfig } from '../../src/config/load_config.js';
import type { TetherConfig } from '../../src/config/schema.js';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { startKubernetesIssuer, type KubernetesIssuer } from './support/kubernetes_issuer.js';

/**
 * Federation and the configuration reload (docs/operations.md#configuration-reload): a client's
 * federatedIdentities are live — removing one stops it at the next request, adding a federated
 * client works at once — while the trusted issuers themselves wait for a restart.
 */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let cluster: KubernetesIssuer;
let tether: RunningTether;
let dpopKey: DpopKey;

const worker = (id: string, name: string) => ({
  id, owner: 'team', purpose: 'tests', binding: 'dpop', auth: { method: 'federated' },
  federatedIdentities: [{ issuer: cluster.issuer, subject: `system:serviceaccount:payments:${name}` }], resources: { [ORDERS]: ['orders:read'] },
});

beforeAll(async () => {
  cluster = await startKubernetesIssuer();
  tether = await startTestTether({
    config: { ...testConfig({ clients: [worker('worker-a', 'a')] }), federation: { issuers: [{ issuer: cluster.issuer, caFile: cluster.caFile, algorithms: ['RS256'] }] } },
  });
  dpopKey = await createDpopKey();
});

afterAll(async () => {
  await tether?.close();
  await cluster?.close();
});

function changed(change: (raw: Record<string, unknown>) => void): TetherConfig {
  const raw = structuredClone(tether.config) as unknown as Record<string, unknown>;
  change(raw);
  return parseConfig(raw);
}

async function authenticate(clientId: string, name: string): Promise<TokenResponse> {
  return postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials', client_id: clientId, client_assertion_type: JWT_BEARER, resource: ORDERS,
    client_assertion: await cluster.serviceAccountToken({ namespace: 'payments', name, audience: tether.issuer }),
  }, { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
}

test('a federated client added by a reload authenticates at once; one whose identity is removed is refused at the next request', async () => {
  expect((await authenticate('worker-a', 'a')).status).toBe(200);
  expect((await authenticate('worker-b', 'b')).body.error).toBe('invalid_client');

  await tether.app.reconfigure(changed((raw) => {
    const clients = raw.clients as Record<string, unknown>[];
    clients.push(worker('worker-b', 'b'));
    // worker-a now trusts another service account only.
    clients.find((client) => client.id === 'worker-a')!.federatedIdentities = [{ issuer: cluster.issuer, subject: 'system:serviceaccount:payments:other' }];
  }));
  expect((await authenticate('worker-b', 'b')).status).toBe(200);
  const refused = await authenticate('worker-a', 'a');
  expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 401, error: 'invalid_client' });
});

test('trusted issuers change only at a restart: the reload names the changed paths', async () => {
  const done = await tether.app.reconfigure(changed((raw) => {
    ((raw.federation as { issuers: Record<string, unknown>[] }).issuers[0]!).maxTokenAge = 60;
  }));
  expect(done).toMatchObject({ needsRestart: ['federation.issuers[0].maxTokenAge'] });
  expect(tether.app.configuration().config.federation.issuers[0]!.maxTokenAge).toBe(3600);
});

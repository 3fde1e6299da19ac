import { decodeJwt } from 'jose';
import type { CommandContext } from '../../src/cli/inventory_output.js';
import { tokensList, tokensShow } from '../../src/cli/tokens_commands.js';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { Captured, contextFor } from '../cli/cli_support.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether } from '../support/tether.js';
import { startKubernetesIssuer, type KubernetesIssuer } from './support/kubernetes_issuer.js';

/** `tether tokens show` / `list --issuer`: the external identity a token was issued for, and every token of one trusted issuer. */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ORDER_HISTORY = 'https://order-history.test.example';
const WORKER_SUB = 'system:serviceaccount:payments:worker';

let cluster: KubernetesIssuer;
let tether: RunningTether;
let dpopKey: DpopKey;
let out: Captured;
let context: CommandContext;
let federatedJti: string;
let onwardJti: string;
let ownJti: string;

async function asWorkload(form: Record<string, string>): Promise<string> {
  const response = await postForm(tether.tokenEndpoint, {
    client_id: 'payments-worker', client_assertion_type: JWT_BEARER,
    client_assertion: await cluster.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: tether.issuer }), ...form,
  }, { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
  expect(response.status).toBe(200);
  return response.body.access_token as string;
}

beforeAll(async () => {
  cluster = await startKubernetesIssuer();
  const base = testConfig({
    clients: [{
      id: 'payments-worker', owner: 'team-payments', purpose: 'charges cards', binding: 'dpop', auth: { method: 'federated' },
      federatedIdentities: [{ issuer: cluster.issuer, subject: WORKER_SUB }],
      resources: { [ORDERS]: ['orders:read'] }, exchange: { targets: { [ORDER_HISTORY]: ['orders:read'] } },
    }],
  });
  tether = await startTestTether({
    config: {
      ...base,
      resources: [...(base.resources as object[]), { uri: ORDER_HISTORY, scopes: ['orders:read'] }],
      federation: { issuers: [{ issuer: cluster.issuer, caFile: cluster.caFile, algorithms: ['RS256'] }] },
    },
  });
  dpopKey = await createDpopKey();
  out = new Captured();
  context = contextFor(tether, out);
  const federated = await asWorkload({ grant_type: 'client_credentials', resource: ORDERS });
  federatedJti = decodeJwt(federated).jti!;
  onwardJti = decodeJwt(await asWorkload({
    grant_type: TOKEN_EXCHANGE, subject_token: federated, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: ORDER_HISTORY,
  })).jti!;
  ownJti = (await tether.token({ client: 'mtls-client', resource: ORDERS })).claims!.jti!;
});

afterAll(async () => {
  await tether?.close();
  await cluster?.close();
});

beforeEach(() => out.take());

test('tokens list --issuer: the tokens of that issuer\'s identities, the onward exchange included, and no other', async () => {
  const listed = await tokensList(context, { issuer: cluster.issuer, json: true });
  expect(listed.map((token) => token.tokenId).sort()).toEqual([federatedJti, onwardJti].sort());
  const printed = JSON.parse(out.take()) as Record<string, unknown>[];
  expect(printed.map((token) => token.external_identity)).toEqual([
    { issuer: cluster.issuer, subject: WORKER_SUB, token_id: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
    { issuer: cluster.issuer, subject: WORKER_SUB, token_id: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
  ]);
  expect(await tokensList(context, { issuer: 'https://token.actions.githubusercontent.com' })).toEqual([]);
  expect(out.take()).toBe('no tokens match\n');
  const everything = await tokensList(context, { json: true });
  expect(everything.map((token) => token.tokenId)).toContain(ownJti);
  expect((JSON.parse(out.take()) as Record<string, unknown>[]).find((token) => token.token_id === ownJti)!.external_identity).toBeNull();
});

test('tokens show names the external identity, in text and JSON', async () => {
  await tokensShow(context, federatedJti);
  const text = out.take();
  expect(text).toMatch(new RegExp(`external identity\\s+${WORKER_SUB} of ${cluster.issuer.replaceAll('.', '\\.')} \\(token [A-Za-z0-9_-]{43}\\)`));
  await tokensShow(context, onwardJti, { json: true });
  const shown = JSON.parse(out.take()) as Record<string, unknown> & { ancestors: { token_id: string }[] };
  expect(shown.external_identity).toMatchObject({ issuer: cluster.issuer, subject: WORKER_SUB });
  expect(shown.ancestors.map((ancestor) => ancestor.token_id)).toEqual([federatedJti]);
  await tokensShow(context, ownJti);
  expect(out.take()).toMatch(/external identity\s+-\n/);
});

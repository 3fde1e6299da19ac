import { decodeJwt } from 'jose';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { hashIdentifier } from '../../src/storage/hash_id.js';
import { postForm } from '../support/tether.js';
import { LedgerClient, ORDERS, REPORTS, VAULT, startLedgerTether } from '../ledger/ledger_config.js';
import { dumpEveryRow } from './table_dump.js';

/**
 * Issue 12 item 8: nothing Tether stores can be presented as a token. An opaque access token's
 * value is its oidc-provider id (`jti`); the adapter keeps it only as a SHA-256 in `id_hash`, and
 * neither the payload nor the ledger holds it. Every column of every table is searched.
 */

let tether: RunningTether;
let client: LedgerClient;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
});

afterAll(() => tether?.close());

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

test('opaque tokens (client_credentials and exchanged) appear nowhere in the database; introspection and revocation still work', async () => {
  const opaque = await client.accessToken('worker', REPORTS);
  expect(opaque).not.toContain('.');
  const jwt = await client.accessToken('worker', ORDERS);
  const exchanged = await client.exchange('orders-api', jwt, VAULT);
  expect(exchanged).not.toContain('.');
  // Refused requests that carry the opaque tokens, so that every path that records what it saw runs.
  expect((await client.introspectAs('worker', opaque)).body).toEqual({ active: false });
  const refusedExchange = await postForm(tether.tokenEndpoint, {
    grant_type: TOKEN_EXCHANGE, client_id: 'orders-api', subject_token: opaque, subject_token_type: ACCESS_TOKEN_TYPE, resource: VAULT,
  }, { dispatcher: client.agent('orders-api') });
  expect(refusedExchange.status).toBe(400);

  const dump = await dumpEveryRow(tether.database.knex);
  // The row is there, under the hash of the token…
  expect(dump).toContain(hashIdentifier(opaque));
  expect(dump).toContain(hashIdentifier(exchanged));
  // …and the token itself (which is its oidc-provider jti) nowhere.
  expect(dump).not.toContain(opaque);
  expect(dump).not.toContain(exchanged);
  const [payload] = await tether.database.knex('oidc_payloads').where({ id_hash: hashIdentifier(opaque) }).pluck('payload');
  expect(payload).not.toHaveProperty('jti');
  expect(payload).toMatchObject({ kind: 'ClientCredentials', clientId: 'worker', scope: 'reports:read', aud: REPORTS });

  // Introspection finds both by hash.
  const introspected = await client.introspectAsReportsApi(opaque);
  expect(introspected.body).toMatchObject({ active: true, client_id: 'worker', aud: REPORTS, scope: 'reports:read' });
  expect(introspected.body).not.toHaveProperty('jti');
  expect((await client.introspectAsReportsApi(exchanged)).body).toMatchObject({ active: true, client_id: 'orders-api', aud: VAULT });

  // Revocation by its client: inactive afterwards, and oidc-provider's own copy is gone (its
  // destroy() used the id that find() put back).
  expect((await client.revokeAs('worker', opaque)).status).toBe(200);
  expect((await client.introspectAsReportsApi(opaque)).body).toEqual({ active: false });
  expect(await tether.database.knex('oidc_payloads').where({ id_hash: hashIdentifier(opaque) })).toHaveLength(0);
  // Revoking the JWT it was exchanged from revokes the exchanged opaque token (lineage).
  expect((await client.revokeAs('worker', jwt)).status).toBe(200);
  expect((await client.introspectAsReportsApi(exchanged)).body).toEqual({ active: false });
  expect(decodeJwt(jwt).jti).toBeDefined();

  expect(await dumpEveryRow(tether.database.knex)).not.toContain(exchanged);
});

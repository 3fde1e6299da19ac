import { decodeJwt } from 'jose';
import type { Agent } from 'undici';
import { DEV_CONFIG } from '../../../src/config/dev_defaults.js';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load_config.js';
import type { RunningTether } from '../../../src/testing/start_tether.js';
import { postForm, startTestTether } from '../../support/tether.js';

/**
 * `resources[].servedBy`: which clients are an API, and so may exchange the tokens sent to it under
 * delegation (docs/token-exchange.md "Who serves an API"). The configuration checks, and the
 * development configuration's documented flow: orders-worker calls the payments API, and
 * payments-api exchanges that token to read orders on its behalf.
 */

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const ORDERS = 'https://orders.example.test';
const PAYMENTS = 'https://payments.example.test';

function configWith(changes: { servedBy?: unknown[]; actFor?: string[] }): Record<string, unknown> {
  return {
    issuer: 'https://auth.example',
    listeners: { https: { port: 8443 } },
    resources: [
      { uri: 'https://a.example', scopes: ['read'] },
      { uri: 'https://b.example', scopes: ['read'], ...(changes.servedBy ? { servedBy: changes.servedBy } : {}) },
    ],
    clients: [
      { id: 'a', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=a' }, resources: { 'https://b.example': ['read'] } },
      {
        id: 'b', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=b' },
        exchange: { targets: { 'https://a.example': ['read'] }, actFor: changes.actFor ?? [] },
      },
    ],
  };
}

function messageOf(raw: unknown): string {
  try {
    parseConfig(raw, { source: 'tether.config.yaml' });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration of servedBy', () => {
  test('defaults to nobody; a delegate listed for the API it receives tokens for is accepted', () => {
    expect(parseConfig(configWith({})).resources[1]!.servedBy).toEqual([]);
    expect(parseConfig(configWith({ servedBy: ['b'], actFor: ['a'] })).resources[1]!.servedBy).toEqual(['b']);
  });

  test('an unknown client id names its path', () => {
    expect(messageOf(configWith({ servedBy: ['b', 'nobody'], actFor: ['a'] }))).toBe('tether.config.yaml: resources[1].servedBy[1]: unknown client "nobody"');
  });

  test('a value that is not a client id string names its path', () => {
    expect(messageOf(configWith({ servedBy: [7] }))).toMatch(/^tether\.config\.yaml: resources\[1\]\.servedBy\[0\]: /);
  });

  test('actFor on a client that serves no resource is refused at start, with the fix in the message', () => {
    expect(messageOf(configWith({ actFor: ['a'] }))).toBe(
      'tether.config.yaml: clients[1].exchange.actFor: client "b" serves no resource: list it in the servedBy of the resource whose tokens it receives (docs/token-exchange.md)');
  });

  test('the development defaults and the annotated example declare who serves the payments API', async () => {
    expect(parseConfig(DEV_CONFIG).resources.find((resource) => resource.uri === PAYMENTS)!.servedBy).toEqual(['payments-api']);
    const example = await loadConfigFile(new URL('../../../docs/tether.config.example.yaml', import.meta.url).pathname, {});
    expect(example.resources.find((resource) => resource.uri === 'https://payments.internal.example')!.servedBy).toEqual(['payments-api']);
  });
});

describe('the development configuration\'s exchange (tether dev)', () => {
  let tether: RunningTether;
  const agents = new Map<string, Agent>();
  const agent = (clientId: string) => {
    if (!agents.has(clientId)) agents.set(clientId, tether.dispatcherFor(clientId));
    return agents.get(clientId)!;
  };

  beforeAll(async () => {
    tether = await startTestTether();
  });

  afterAll(async () => {
    await tether?.close();
  });

  async function workerToken(resource: string, scope: string): Promise<string> {
    const { status, body } = await postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: 'orders-worker', resource, scope }, { dispatcher: agent('orders-worker') });
    expect(status).toBe(200);
    return body.access_token as string;
  }

  function exchangeAsPaymentsApi(subjectToken: string) {
    return postForm(tether.tokenEndpoint, {
      grant_type: TOKEN_EXCHANGE, client_id: 'payments-api', subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, resource: ORDERS, scope: 'orders:read',
    }, { dispatcher: agent('payments-api') });
  }

  test('payments-api exchanges the token orders-worker sent to the payments API, to read orders for it', async () => {
    const sent = await workerToken(PAYMENTS, 'payments:charge orders:read');
    const { status, body } = await exchangeAsPaymentsApi(sent);
    expect(status).toBe(200);
    expect(decodeJwt(body.access_token as string)).toMatchObject({
      aud: ORDERS, sub: 'orders-worker', client_id: 'payments-api', scope: 'orders:read', act: { sub: 'payments-api' },
    });
  });

  test('orders-worker\'s token for the orders API, leaked to payments-api, is not exchangeable → invalid_grant', async () => {
    // Before servedBy this answered 200 with an orders token bound to payments-api's certificate.
    const leaked = await workerToken(ORDERS, 'orders:read');
    const { status, body } = await exchangeAsPaymentsApi(leaked);
    expect({ status, body }).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'subject_token is invalid, expired, revoked, or not acceptable for this client' },
    });
    const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: 'payments-api' }).orderBy('id', 'desc').first();
    const details = typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
    expect(details).toMatchObject({
      error: 'invalid_grant',
      reason: `subject token ${decodeJwt(leaked).jti} is for ${ORDERS}, which client payments-api does not serve (resources[].servedBy)`,
    });
    expect(await tether.database.knex('issued_tokens').where({ client_id: 'payments-api' }).count({ count: '*' }).then((rows) => Number(rows[0]!.count))).toBe(1);
  });
});

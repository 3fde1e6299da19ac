import fc from 'fast-check';
import { request, type Agent } from 'undici';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { DPOP_SECRET, ORDERS, testConfig } from '../support/config.js';
import { basicAuth, startTestTether } from '../support/tether.js';

// "Nothing a client sends may produce a 500": malformed requests to every endpoint get a 4xx with an
// OAuth error body (or a plain 404/405), and the server keeps working afterwards.

let tether: RunningTether;
let mtls: Agent;

beforeAll(async () => {
  tether = await startTestTether({ config: testConfig() });
  mtls = tether.dispatcherFor('mtls-client');
});

afterAll(async () => {
  await tether?.close();
});

async function send(path: string, options: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {}) {
  const response = await request(`${tether.issuer}${path}`, {
    method: (options.method ?? 'POST') as 'POST',
    body: options.body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    dispatcher: mtls,
  });
  const text = await response.body.text();
  return { status: response.statusCode, text };
}

const cases: [string, string, Parameters<typeof send>[1]][] = [
  ['empty body', '/token', { body: '' }],
  ['not a form', '/token', { body: '{"grant_type":"client_credentials"}', headers: { 'content-type': 'application/json' } }],
  ['unknown grant type', '/token', { body: 'grant_type=password&client_id=mtls-client' }],
  ['grant_type twice', '/token', { body: 'grant_type=client_credentials&grant_type=client_credentials&client_id=mtls-client' }],
  ['invalid percent-encoding', '/token', { body: 'grant_type=client_credentials&client_id=mtls-client&resource=%E0%A4%A' }],
  ['non-UTF-8 bytes', '/token', { body: Buffer.from([0x67, 0x72, 0x61, 0x6e, 0x74, 0x3d, 0xff, 0xfe, 0xfd]) }],
  ['a 300 kB scope', '/token', { body: `grant_type=client_credentials&client_id=mtls-client&resource=${encodeURIComponent(ORDERS)}&scope=${'a'.repeat(300_000)}` }],
  ['scope with control characters', '/token', { body: `grant_type=client_credentials&client_id=mtls-client&resource=${encodeURIComponent(ORDERS)}&scope=%00%01` }],
  ['a thousand resource values', '/token', { body: `grant_type=client_credentials&client_id=mtls-client&${Array.from({ length: 1000 }, (_, index) => `resource=https://r${index}.example`).join('&')}` }],
  ['garbage Authorization header', '/token', { body: 'grant_type=client_credentials', headers: { authorization: 'Basic %%%not-base64' } }],
  ['Basic with no colon', '/token', { body: 'grant_type=client_credentials', headers: { authorization: `Basic ${Buffer.from('nocolon').toString('base64')}` } }],
  ['two client authentication methods', '/token', { body: `grant_type=client_credentials&client_id=dpop-client&client_secret=${DPOP_SECRET}`, headers: { authorization: basicAuth('dpop-client', DPOP_SECRET) } }],
  ['a DPoP header larger than the 16 kB header limit (431 from the HTTP parser)', '/token', { body: `grant_type=client_credentials&resource=${encodeURIComponent(ORDERS)}`, headers: { authorization: basicAuth('dpop-client', DPOP_SECRET), dpop: 'x'.repeat(20_000) } }],
  ['token exchange with garbage tokens', '/token', { body: `grant_type=${encodeURIComponent('urn:ietf:params:oauth:grant-type:token-exchange')}&client_id=mtls-client&subject_token=a.b.c&subject_token_type=urn:ietf:params:oauth:token-type:access_token&resource=${encodeURIComponent(ORDERS)}` }],
  ['GET on the token endpoint', '/token', { method: 'GET' }],
  ['unknown path', '/nope', { method: 'GET' }],
];

describe('malformed requests never produce a 5xx', () => {
  test.each(cases)('%s', async (_label, path, options) => {
    const { status, text } = await send(path, options);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
    // OAuth refusals carry an RFC 6749 §5.2 error body; routing and parser refusals (404, 431) do not.
    if (status === 400 || status === 401) expect(JSON.parse(text)).toHaveProperty('error');
  });

  test('introspection of garbage is inactive and revocation of garbage is a no-op (RFC 7662 §2.2, RFC 7009 §2.2)', async () => {
    const introspection = await send('/token/introspection', { body: 'client_id=mtls-client&token=%00%00' });
    expect(introspection.status).toBe(200);
    expect(JSON.parse(introspection.text)).toEqual({ active: false });
    const revocation = await send('/token/revocation', { body: 'client_id=mtls-client&token=eyJ.eyJ.sig' });
    expect(revocation.status).toBe(200);
  });

  test('random form fields on the token endpoint (bounded property run)', async () => {
    const field = fc.constantFrom('grant_type', 'client_id', 'client_secret', 'resource', 'scope', 'audience', 'subject_token', 'subject_token_type', 'actor_token', 'requested_token_type', 'client_assertion', 'client_assertion_type');
    const value = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', ORDERS, 'mtls-client', 'orders:read', ''));
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(field, value), { maxLength: 8 }), async (pairs) => {
      const body = new URLSearchParams(pairs).toString();
      const { status } = await send('/token', { body });
      return status < 500;
    }), { numRuns: 150 });
  });

  test('the server still issues tokens afterwards', async () => {
    const { status } = await send('/token', { body: `grant_type=client_credentials&client_id=mtls-client&resource=${encodeURIComponent(ORDERS)}` });
    expect(status).toBe(200);
  });
});

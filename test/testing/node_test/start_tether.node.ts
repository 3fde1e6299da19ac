// The harness under node:test (run by test/testing/node_test_runner.test.ts through `node --test`):
// no jest globals, no shared state, two instances side by side.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { startTether } from '../../../src/testing/index.js';

const ORDERS = 'https://orders.example.test';

test('two Tethers in one process: separate issuers, keys and tokens', async () => {
  const [first, second] = await Promise.all([startTether(), startTether()]);
  try {
    assert.notEqual(first.issuer, second.issuer);
    const token = await first.token({ client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
    const { payload } = await jwtVerify(token.accessToken, createLocalJWKSet(first.jwks as never), { issuer: first.issuer, audience: ORDERS });
    assert.equal(payload.client_id, 'orders-worker');
    await assert.rejects(jwtVerify(token.accessToken, createLocalJWKSet(second.jwks as never)));
  } finally {
    await Promise.all([first.close(), second.close()]);
  }
});

test('the probe runs under node:test too', async () => {
  const tether = await startTether();
  try {
    const cases = await tether.badTokens({ client: 'reporting-cli', resource: ORDERS, scope: 'orders:read' });
    assert.ok(cases.some((check) => check.id === 'proof-replayed'));
  } finally {
    await tether.close();
  }
});

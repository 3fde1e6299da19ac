import { clientSchema, resourceSchema, type ClientConfig } from '../../src/config/schema.js';
import { Refusal } from '../../src/oauth/refusal.js';
import { selectBinding, selectResource, TARGET_REFUSALS } from '../../src/grants/resource_policy.js';

/** The pure resource policy: one public description per invalid_target refusal, the reason private. */

const ORDERS = 'https://orders.policy.test';
const LEGACY = 'https://legacy.policy.test';
const registry = new Map([
  [ORDERS, resourceSchema.parse({ uri: ORDERS, scopes: ['orders:read'] })],
  [LEGACY, resourceSchema.parse({ uri: LEGACY, scopes: ['legacy:read'], allowBearer: true })],
]);

function client(overrides: Record<string, unknown> = {}): ClientConfig {
  return clientSchema.parse({ id: 'worker', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=worker' }, ...overrides });
}

function refusalOf(decide: () => unknown): Pick<Refusal, 'error' | 'description' | 'reason'> {
  try {
    decide();
  } catch (error) {
    if (error instanceof Refusal) return { error: error.error, description: error.description, reason: error.reason };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('selectResource (RFC 8707 §2)', () => {
  const worker = client({ resources: { [ORDERS]: ['orders:read'] } });

  test.each([
    ['missing', undefined, TARGET_REFUSALS.missing, 'no resource requested and the client has no default resource'],
    ['several', [ORDERS, LEGACY], TARGET_REFUSALS.several, '2 resource values requested'],
    ['unknown', 'https://nowhere.policy.test', TARGET_REFUSALS.unknown, 'unknown resource "https://nowhere.policy.test"'],
    ['not permitted for this client', LEGACY, TARGET_REFUSALS.notPermitted, `resource ${LEGACY} is not permitted for client worker`],
  ])('%s → invalid_target', (_label, requested, description, reason) => {
    expect(refusalOf(() => selectResource(requested, worker, worker.resources, registry))).toEqual({ error: 'invalid_target', description, reason });
  });

  test('the descriptions say what is wrong, and never name the client or the resource', () => {
    expect(TARGET_REFUSALS).toEqual({
      missing: 'the resource parameter is required',
      several: 'exactly one resource parameter is required',
      unknown: 'the requested resource is not registered at this server',
      notPermitted: 'this client may not obtain tokens for the requested resource',
      bearerNotAllowed: 'the requested resource accepts only sender-constrained tokens, and this client\'s tokens are unbound',
    });
  });

  test('a permitted resource is selected', () => {
    expect(selectResource(ORDERS, worker, worker.resources, registry).uri).toBe(ORDERS);
  });
});

describe('selectBinding', () => {
  test('an unbound client and a resource that does not allow bearer tokens → invalid_target with that reason', () => {
    expect(refusalOf(() => selectBinding(client({ binding: 'none' }), registry.get(ORDERS)!))).toEqual({
      error: 'invalid_target', description: TARGET_REFUSALS.bearerNotAllowed, reason: `resource ${ORDERS} does not allow bearer tokens`,
    });
    expect(selectBinding(client({ binding: 'none' }), registry.get(LEGACY)!)).toBe('bearer');
  });
});

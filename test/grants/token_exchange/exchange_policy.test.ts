import { clientSchema, resourceSchema, type ClientConfig } from '../../../src/config/schema.js';
import {
  chainDepthOf, decideExchange, exchangeExpiry, InvalidPresentedToken, nextActClaim, requireAudienceServedByDelegate, requirePresentableBy,
  requireSenderConstraintKept, selectExchangeScopes, selectExchangeTarget, type ExchangeableToken, type ExchangeInput,
} from '../../../src/grants/token_exchange/exchange_policy.js';
import { Refusal } from '../../../src/oauth/refusal.js';

const B = 'https://b.chain.test';
const C = 'https://c.chain.test';
const now = new Date('2026-11-22T10:00:00Z');

const PAYROLL = 'https://payroll.chain.test';

// B is served by service-b (and legacy, a bearer-only deployment of it); C by service-c.
const registry = new Map([
  [B, resourceSchema.parse({ uri: B, scopes: ['orders:read', 'orders:write'], lifetime: 600, servedBy: ['service-b', 'legacy'] })],
  [C, resourceSchema.parse({ uri: C, scopes: ['orders:read', 'orders:write'], lifetime: 600, servedBy: ['service-c'] })],
  [PAYROLL, resourceSchema.parse({ uri: PAYROLL, scopes: ['orders:read'], lifetime: 600 })],
]);

function client(id: string, exchange: Record<string, unknown> = {}, binding: 'mtls' | 'dpop' | 'none' = 'mtls'): ClientConfig {
  return clientSchema.parse({ id, owner: 'o', purpose: 'p', binding, auth: { method: 'tls_client_auth', subjectDn: `CN=${id}` }, exchange });
}

function token(overrides: Partial<ExchangeableToken> = {}): ExchangeableToken {
  return {
    tokenId: 'jti-a', format: 'jwt', clientId: 'service-a', subject: 'service-a', audience: B,
    scopes: ['orders:read', 'orders:write'], expiresAt: new Date(now.getTime() + 120_000),
    confirmation: { x5t: 'thumb-a' }, ...overrides,
  };
}

const serviceB = client('service-b', { targets: { [C]: ['orders:read', 'orders:write'] }, actFor: ['service-a'], acceptBoundSubjectTokens: true });

function input(overrides: Partial<ExchangeInput> = {}): ExchangeInput {
  return {
    request: { subject: { value: 'x', type: 'access_token' }, target: C, targetParameter: 'resource', scope: 'orders:read' },
    subject: token(),
    client: serviceB,
    presented: { certificateThumbprint: 'thumb-b' },
    registry,
    maxChainDepth: 3,
    now,
    ...overrides,
  };
}

function refusalOf(decide: () => unknown): { code: string; reason: string; description: string } {
  try {
    decide();
  } catch (error) {
    if (error instanceof InvalidPresentedToken) return { code: 'invalid_grant', reason: error.reason, description: error.description };
    if (error instanceof Refusal) return { code: error.error, reason: error.reason, description: error.description };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('decideExchange: delegation A → B → C', () => {
  test('B, trusted to act for A, exchanges A\'s certificate-bound token: sub stays A, act names B, expiry capped', () => {
    const decision = decideExchange(input());
    expect(decision.resource.uri).toBe(C);
    expect(decision.scopes).toEqual(['orders:read']);
    expect(decision.subject).toBe('service-a');
    expect(decision.act).toEqual({ sub: 'service-b' });
    expect(decision.lifetimeSeconds).toBe(120);
    expect(decision.notAfter).toEqual(token().expiresAt);
    expect(decision.relation).toEqual({ kind: 'delegation', basis: 'act_for' });
  });

  test('no scope requested: the intersection of the subject token\'s scopes and the exchangeable ones', () => {
    const decision = decideExchange(input({ request: { ...input().request, scope: undefined }, subject: token({ scopes: ['orders:read', 'orders:refund'] }) }));
    expect(decision.scopes).toEqual(['orders:read']);
  });
});

describe('requirePresentableBy', () => {
  test('own token, actFor, may_act', () => {
    expect(requirePresentableBy(token({ clientId: 'service-b' }), serviceB)).toEqual({ kind: 'own' });
    expect(requirePresentableBy(token(), serviceB)).toEqual({ kind: 'delegation', basis: 'act_for' });
    expect(requirePresentableBy(token({ clientId: 'service-x', mayAct: { sub: 'service-b' } }), serviceB)).toEqual({ kind: 'delegation', basis: 'may_act' });
  });

  test('a client that may not act for the token\'s client → invalid_grant', () => {
    expect(refusalOf(() => requirePresentableBy(token({ clientId: 'service-x' }), serviceB)).code).toBe('invalid_grant');
    expect(refusalOf(() => requirePresentableBy(token({ mayAct: { sub: 'someone-else' } }), client('mallory'))).code).toBe('invalid_grant');
  });
});

describe('requireAudienceServedByDelegate: a delegate exchanges only tokens sent to an API it serves (RFC 8693 §2.1)', () => {
  const actFor = { kind: 'delegation', basis: 'act_for' } as const;
  const mayAct = { kind: 'delegation', basis: 'may_act' } as const;

  test('A\'s token for B, presented by B (which serves B) → accepted', () => {
    expect(() => requireAudienceServedByDelegate(token(), serviceB, actFor, registry)).not.toThrow();
  });

  test.each([
    ['an API nobody in the chain serves', PAYROLL, actFor],
    ['the next hop\'s API (C), not B\'s', C, actFor],
    ['a resource no longer registered', 'https://retired.chain.test', actFor],
    ['an API B does not serve, B named in may_act', PAYROLL, mayAct],
  ])('A\'s token for %s, presented by B → invalid_grant, reason private', (_label, audience, relation) => {
    const refusal = refusalOf(() => requireAudienceServedByDelegate(token({ audience }), serviceB, relation, registry));
    expect(refusal).toEqual({
      code: 'invalid_grant',
      reason: `subject token jti-a is for ${audience}, which client service-b does not serve (resources[].servedBy)`,
      description: 'subject_token is invalid, expired, revoked, or not acceptable for this client',
    });
  });

  test('its own token needs no served audience: it holds the key and gains nothing', () => {
    expect(() => requireAudienceServedByDelegate(token({ clientId: 'service-b', audience: PAYROLL }), serviceB, { kind: 'own' }, registry)).not.toThrow();
  });

  test('decideExchange checks it right after who may present the token, before the binding', () => {
    // Bound to A's certificate and B trusted with such tokens: the audience is what refuses it.
    expect(refusalOf(() => decideExchange(input({ subject: token({ audience: PAYROLL }) }))).reason).toBe(
      `subject token jti-a is for ${PAYROLL}, which client service-b does not serve (resources[].servedBy)`);
    // A client that may not act for A hears that first, whatever the audience.
    expect(refusalOf(() => decideExchange(input({ subject: token({ audience: PAYROLL }), client: client('mallory', { targets: { [C]: ['orders:read'] } }) }))).reason)
      .toBe('client mallory may not act for client service-a');
  });
});

describe('requireSenderConstraintKept: an exchange never strips a binding', () => {
  const own = { kind: 'own' } as const;
  test('the holder of the certificate or DPoP key may exchange its own bound token', () => {
    expect(() => requireSenderConstraintKept(token({ clientId: 'service-b', confirmation: { x5t: 'thumb-b' } }), serviceB, { certificateThumbprint: 'thumb-b' }, own)).not.toThrow();
    expect(() => requireSenderConstraintKept(token({ clientId: 'service-b', confirmation: { jkt: 'jkt-b' } }), serviceB, { dpopJkt: 'jkt-b' }, own)).not.toThrow();
  });

  test('its own token with another certificate or another DPoP key → invalid_grant', () => {
    expect(refusalOf(() => requireSenderConstraintKept(token({ confirmation: { x5t: 'thumb-b' } }), serviceB, { certificateThumbprint: 'thumb-x' }, own)).code).toBe('invalid_grant');
    expect(refusalOf(() => requireSenderConstraintKept(token({ confirmation: { jkt: 'jkt-b' } }), serviceB, { dpopJkt: 'jkt-x' }, own)).code).toBe('invalid_grant');
    expect(refusalOf(() => requireSenderConstraintKept(token({ confirmation: { jkt: 'jkt-b' } }), serviceB, {}, own)).code).toBe('invalid_grant');
  });

  test('delegation needs acceptBoundSubjectTokens with actFor; may_act alone does not lift a binding', () => {
    const strict = client('b-strict', { targets: { [C]: ['orders:read'] }, actFor: ['service-a'] });
    expect(refusalOf(() => requireSenderConstraintKept(token(), strict, { certificateThumbprint: 'thumb-b' }, { kind: 'delegation', basis: 'act_for' })).code).toBe('invalid_grant');
    const trusting = client('b-may', { acceptBoundSubjectTokens: true });
    expect(refusalOf(() => requireSenderConstraintKept(token(), trusting, {}, { kind: 'delegation', basis: 'may_act' })).code).toBe('invalid_grant');
  });

  test('an unbound subject token needs no key', () => {
    expect(() => requireSenderConstraintKept(token({ confirmation: {} }), serviceB, {}, own)).not.toThrow();
  });

  test('a bound token is never exchanged into a bearer token', () => {
    const bearer = client('legacy', { targets: {}, actFor: ['service-a'], acceptBoundSubjectTokens: true }, 'none');
    expect(refusalOf(() => decideExchange(input({ client: bearer })))).toMatchObject({ code: 'invalid_grant', reason: 'bound subject token jti-a would become a bearer token for client legacy' });
  });
});

describe('actor token', () => {
  test('must be the requesting client\'s own token, presented with its key', () => {
    const actor = token({ tokenId: 'jti-b', clientId: 'service-b', subject: 'service-b', confirmation: { x5t: 'thumb-b' } });
    expect(() => decideExchange(input({ actor }))).not.toThrow();
    expect(refusalOf(() => decideExchange(input({ actor: { ...actor, clientId: 'service-a' } })))).toMatchObject({ code: 'invalid_grant' });
    expect(refusalOf(() => decideExchange(input({ actor, presented: { certificateThumbprint: 'thumb-x' } })))).toMatchObject({ code: 'invalid_grant' });
  });
});

describe('target, scope, expiry', () => {
  test('unknown or not-permitted target → invalid_target, each with its own description', () => {
    expect(refusalOf(() => decideExchange(input({ request: { ...input().request, target: 'https://nowhere.test' } })))).toEqual({
      code: 'invalid_target', description: 'the requested resource is not registered at this server', reason: 'unknown exchange target "https://nowhere.test" (resource)',
    });
    expect(refusalOf(() => selectExchangeTarget('nowhere', 'audience', serviceB, registry))).toEqual({
      code: 'invalid_target', description: 'the requested audience is not a resource registered at this server', reason: 'unknown exchange target "nowhere" (audience)',
    });
    expect(refusalOf(() => decideExchange(input({ request: { ...input().request, target: B } })))).toEqual({
      code: 'invalid_target',
      description: 'this client may not obtain tokens for the requested resource by token exchange',
      reason: `exchange target ${B} is not permitted for client service-b (not in exchange.targets)`,
    });
  });

  test.each([
    ['a scope the subject token lacks', 'orders:refund', ['orders:read', 'orders:refund'], ['orders:read', 'orders:write']],
    ['a scope the client may not obtain by exchange', 'orders:write', ['orders:read'], ['orders:read', 'orders:write']],
    ['an empty intersection, none requested', undefined, ['orders:read'], ['orders:write']],
  ])('%s → invalid_scope', (_label, requested, exchangeable, subjectScopes) => {
    expect(refusalOf(() => selectExchangeScopes(requested, subjectScopes, exchangeable)).code).toBe('invalid_scope');
  });

  test('equal scopes are allowed; duplicates collapse', () => {
    expect(selectExchangeScopes('orders:read orders:read orders:write', ['orders:read', 'orders:write'], ['orders:read', 'orders:write'])).toEqual(['orders:read', 'orders:write']);
  });

  test('expiry is the shorter of the target lifetime and the subject token\'s remaining life', () => {
    expect(exchangeExpiry(600, new Date(now.getTime() + 90_500), now).lifetimeSeconds).toBe(90);
    expect(exchangeExpiry(60, new Date(now.getTime() + 90_000), now).lifetimeSeconds).toBe(60);
    expect(refusalOf(() => exchangeExpiry(60, new Date(now.getTime() + 500), now)).code).toBe('invalid_grant');
  });
});

describe('act chain (RFC 8693 §4.1)', () => {
  test('delegation nests the previous actors; exchanging one\'s own token keeps the chain', () => {
    const viaB = token({ clientId: 'service-b', act: { sub: 'service-b' } });
    const serviceC = client('service-c', { actFor: ['service-b'] });
    expect(nextActClaim(viaB, serviceC, { kind: 'delegation', basis: 'act_for' })).toEqual({ sub: 'service-c', act: { sub: 'service-b' } });
    expect(nextActClaim(viaB, client('service-b'), { kind: 'own' })).toEqual({ sub: 'service-b' });
    expect(chainDepthOf({ sub: 'd', act: { sub: 'c', act: { sub: 'b' } } })).toBe(3);
  });

  test('deeper than exchange.maxChainDepth → invalid_request', () => {
    const deep = token({ act: { sub: 'service-a', act: { sub: 'service-0' } } });
    expect(refusalOf(() => decideExchange(input({ subject: deep, maxChainDepth: 2 })))).toMatchObject({ code: 'invalid_request' });
    expect(() => decideExchange(input({ subject: deep, maxChainDepth: 3 }))).not.toThrow();
  });
});

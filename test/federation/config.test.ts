import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import { discoveryUrlOf } from '../../src/federation/issuer_keys.js';
import { claimsMatch } from '../../src/federation/verify_external_token.js';

/** `federation.issuers`, `subjectTokens` and `federatedIdentities` in the configuration: defaults in seconds, and every mistake named. */

const API = 'https://api.example';
const CLUSTER = 'https://kubernetes.default.svc.cluster.local';

const config = (federation: Record<string, unknown>, clients: Record<string, unknown>[] = []) => ({
  issuer: 'https://auth.example',
  listeners: { https: { port: 8443 } },
  resources: [{ uri: API, scopes: ['read', 'write'] }],
  clients: [
    { id: 'c1', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=c1' }, resources: { [API]: ['read'] } },
    ...clients,
  ],
  federation,
});

const worker = (overrides: Record<string, unknown> = {}) => ({
  id: 'worker', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'federated' },
  federatedIdentities: [{ issuer: CLUSTER, subject: 'system:serviceaccount:ns:worker' }], ...overrides,
});

function problemsOf(raw: unknown): readonly string[] {
  try {
    parseConfig(raw, { source: 'tether.config.yaml' });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems.map((problem) => problem.replace(/^tether\.config\.yaml: /, ''));
  }
  throw new Error('expected a ConfigError');
}

test('defaults, in seconds; a parsed configuration parses to itself', () => {
  const parsed = parseConfig(config({ issuers: [{ issuer: CLUSTER, algorithms: ['RS256'] }] }, [worker()]));
  expect(parsed.federation.issuers[0]).toEqual({
    issuer: CLUSTER, discovery: 'openid-configuration', algorithms: ['RS256'], maxTokenAge: 3600, clockLeeway: 30,
    keyRefetchCooldown: 30, keyCacheMaxAge: 600, fetchTimeout: 3, singleUseAssertions: true, subjectTokens: [],
  });
  expect(parseConfig(parsed).federation).toEqual(parsed.federation);
  expect(parseConfig(config({ issuers: [{ issuer: CLUSTER, algorithms: ['ES256'], maxTokenAge: '10m', fetchTimeout: '500ms' }] })).federation.issuers[0])
    .toMatchObject({ maxTokenAge: 600, fetchTimeout: 0.5 });
  expect(parseConfig(config({})).federation).toEqual({ issuers: [], spiffe: { trustDomains: [] } });
});

test('never none, HS256 or an unknown algorithm; https or loopback http only', () => {
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: ['none'] }] }))).toEqual([expect.stringMatching(/^federation\.issuers\[0\]\.algorithms\[0\]: /)]);
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: ['HS256'] }] }))).toEqual([expect.stringMatching(/^federation\.issuers\[0\]\.algorithms\[0\]: /)]);
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: [] }] }))).toEqual([expect.stringMatching(/^federation\.issuers\[0\]\.algorithms: /)]);
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: ['RS256'], jwksUri: 'http://keys.example/jwks' }] })))
    .toEqual(['federation.issuers[0].jwksUri: expected an https URL (plain http only on 127.0.0.1, [::1] or localhost) (got "http://keys.example/jwks")']);
  expect(problemsOf(config({ issuers: [{ issuer: 'http://idp.example', algorithms: ['RS256'] }] })))
    .toEqual(['federation.issuers[0].issuer: discovery needs an https issuer (or loopback http); give jwksUri or jwksFile otherwise (got "http://idp.example")']);
  // An http issuer identifier is fine when its keys come from elsewhere.
  expect(parseConfig(config({ issuers: [{ issuer: 'http://idp.example', algorithms: ['RS256'], jwksFile: 'jwks.json' }] })).federation.issuers).toHaveLength(1);
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: ['RS256'], jwksUri: `${CLUSTER}/openid/v1/jwks`, jwksFile: 'jwks.json' }] })))
    .toEqual(['federation.issuers[0].jwksFile: give at most one of jwksUri or jwksFile (got "jwks.json")']);
});

test('every name is declared: issuers, clients, resources, scopes; Tether is not its own trusted issuer', () => {
  const problems = problemsOf(config({
    issuers: [
      { issuer: CLUSTER, algorithms: ['RS256'], subjectTokens: [{ subject: 's', principal: 'p', clients: ['nobody'], targets: { 'https://unknown.example': ['read'], [API]: ['admin'] } }] },
      { issuer: CLUSTER, algorithms: ['RS256'] },
      { issuer: 'https://auth.example', algorithms: ['ES256'] },
    ],
  }, [
    worker({ federatedIdentities: [{ issuer: 'https://github.example', subject: 'x' }] }),
    worker({ id: 'empty', federatedIdentities: [] }),
    { id: 'mixed', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=m' }, federatedIdentities: [{ issuer: CLUSTER, subject: 'x' }] },
  ]));
  expect(problems).toEqual([
    'federation.issuers[0].subjectTokens[0].clients[0]: unknown client "nobody"',
    'federation.issuers[0].subjectTokens[0].targets.https://unknown.example: unknown resource "https://unknown.example"',
    'federation.issuers[0].subjectTokens[0].targets.https://api.example: scope "admin" is not declared by resource "https://api.example"',
    `federation.issuers[1].issuer: duplicate issuer "${CLUSTER}"`,
    'federation.issuers[2].issuer: Tether\'s own issuer cannot be a trusted external issuer',
    'clients[1].federatedIdentities[0].issuer: unknown issuer "https://github.example" (not in federation.issuers)',
    'clients[2].federatedIdentities: auth method "federated" needs at least one federated identity',
    'clients[3].auth.method: federatedIdentities need auth method "federated"',
  ]);
});

test('SPIFFE: a spiffeId is a SPIFFE ID of a configured trust domain; trust domains are unique and well-formed', () => {
  const svid = (id: string, spiffeId: string) => ({ id, owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', spiffeId }, resources: { [API]: ['read'] } });
  const bundle = (trustDomain: string) => ({ trustDomain, bundleFile: 'bundle.pem' });
  const problems = problemsOf(config({ spiffe: { trustDomains: [bundle('example.org'), bundle('example.org'), bundle('Example.ORG')] } }, [
    svid('unknown-domain', 'spiffe://other.org/ns/a'),
    svid('not-spiffe', 'https://example.org/ns/a'),
    svid('dot-segment', 'spiffe://example.org/ns/../a'),
    svid('trailing-slash', 'spiffe://example.org/ns/'),
    svid('query', 'spiffe://example.org/ns?x=1'),
    { id: 'both', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=b', spiffeId: 'spiffe://example.org/b' } },
  ]));
  expect(problems).toEqual([
    'federation.spiffe.trustDomains[2].trustDomain: a SPIFFE trust domain name (lowercase letters, digits, ".", "-", "_") (got "Example.ORG")',
    'clients[6].auth: give exactly one of subjectDn, sanDns, sanUri, sanIp, sanEmail, spiffeId (got a mapping with keys method, subjectDn, spiffeId)',
  ]);
  const second = problemsOf(config({ spiffe: { trustDomains: [bundle('example.org'), bundle('example.org')] } }, [
    svid('unknown-domain', 'spiffe://other.org/ns/a'),
    svid('not-spiffe', 'https://example.org/ns/a'),
    svid('dot-segment', 'spiffe://example.org/ns/../a'),
    svid('trailing-slash', 'spiffe://example.org/ns/'),
    svid('query', 'spiffe://example.org/ns?x=1'),
  ]));
  expect(second).toEqual([
    'federation.spiffe.trustDomains[1].trustDomain: duplicate trust domain "example.org"',
    'clients[1].auth.spiffeId: trust domain "other.org" is not in federation.spiffe.trustDomains',
    'clients[2].auth.spiffeId: not a SPIFFE ID (spiffe://trust-domain/path, SPIFFE ID §2)',
    'clients[3].auth.spiffeId: not a SPIFFE ID (spiffe://trust-domain/path, SPIFFE ID §2)',
    'clients[4].auth.spiffeId: not a SPIFFE ID (spiffe://trust-domain/path, SPIFFE ID §2)',
    'clients[5].auth.spiffeId: not a SPIFFE ID (spiffe://trust-domain/path, SPIFFE ID §2)',
  ]);
  const parsed = parseConfig(config({ spiffe: { trustDomains: [bundle('example.org')] } }, [svid('worker', 'spiffe://example.org/ns/orders/sa/worker')]));
  expect(parsed.federation.spiffe.trustDomains).toEqual([bundle('example.org')]);
});

test('a mapping rule matches something specific', () => {
  expect(problemsOf(config({ issuers: [{ issuer: CLUSTER, algorithms: ['RS256'], subjectTokens: [{ principal: 'p', clients: ['c1'], targets: { [API]: ['read'] } }] }] })))
    .toEqual(['federation.issuers[0].subjectTokens[0]: give a subject or claims to match (a rule never matches everyone by accident) (got a mapping with keys principal, clients, targets)']);
});

test('required claims match as a subset, objects recursively, values exactly', () => {
  const claims = { sub: 'x', 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'worker' } }, groups: ['a', 'b'], n: 1 };
  expect(claimsMatch(claims, { 'kubernetes.io': { namespace: 'payments' } })).toBe(true);
  expect(claimsMatch(claims, { 'kubernetes.io': { serviceaccount: { name: 'worker' } }, n: 1 })).toBe(true);
  expect(claimsMatch(claims, { 'kubernetes.io': { namespace: 'default' } })).toBe(false);
  expect(claimsMatch(claims, { 'kubernetes.io.namespace': 'payments' })).toBe(false);
  expect(claimsMatch(claims, { groups: ['a'] })).toBe(false);
  expect(claimsMatch(claims, { groups: ['a', 'b'] })).toBe(true);
  expect(claimsMatch(claims, { n: '1' })).toBe(false);
  expect(claimsMatch(claims, { missing: null })).toBe(false);
  expect(claimsMatch({ 'kubernetes.io': 'payments' }, { 'kubernetes.io': { namespace: 'payments' } })).toBe(false);
});

test('discovery URLs: OpenID Connect appends, RFC 8414 inserts', () => {
  expect(discoveryUrlOf('https://idp.example/tenant/', 'openid-configuration')).toBe('https://idp.example/tenant/.well-known/openid-configuration');
  expect(discoveryUrlOf('https://idp.example/tenant', 'oauth-authorization-server')).toBe('https://idp.example/.well-known/oauth-authorization-server/tenant');
  expect(discoveryUrlOf('https://idp.example', 'oauth-authorization-server')).toBe('https://idp.example/.well-known/oauth-authorization-server');
});

// The client's small pure parts: request normalization and cache keys (no collisions), the
// WWW-Authenticate parser, RFC 6749 §2.3.1 Basic credentials, DPoP proofs, metadata checks.
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify, type CryptoKey } from 'jose';
import { normalizeAccessRequest, normalizeScopes, requestMemoKey } from '../../packages/client/src/access_request.js';
import { tokenCacheKey, type TokenHolder } from '../../packages/client/src/cache_key.js';
import { basicCredentials } from '../../packages/client/src/client_auth.js';
import { accessTokenHash, htuOf, prepareDpopKey, signDpopProof } from '../../packages/client/src/dpop.js';
import { createDpopNonces } from '../../packages/client/src/dpop_nonces.js';
import { isClientError } from '../../packages/client/src/errors.js';
import { checkMetadata, discoveryUrls, tokenEndpointOf } from '../../packages/client/src/metadata.js';
import { challengeError, parseChallenges } from '../../packages/client/src/www_authenticate.js';

const holder: TokenHolder = { issuer: 'https://as.example', clientId: 'svc', bindingKey: 'jkt:abc' };
const key = (resource: string, scopes: string[] | string, subject?: string) => tokenCacheKey(holder, normalizeAccessRequest({ resource, scopes }), subject);

describe('requests and cache keys', () => {
  test('scope order and duplicates do not matter; a list and a string are the same set', () => {
    expect(key('https://api.example', ['b', 'a', 'b'])).toBe(key('https://api.example', 'a b'));
    expect(key('https://api.example', '  a   b ')).toBe(key('https://api.example', ['a', 'b']));
  });

  test.each([
    ['a trailing slash', 'https://api.example', 'https://api.example/'],
    ['case of the host', 'https://api.example', 'https://API.example'],
    ['case of the path', 'https://api.example/Orders', 'https://api.example/orders'],
    ['a default port written out', 'https://api.example', 'https://api.example:443'],
    ['a query', 'https://api.example/x', 'https://api.example/x?'],
  ])('resources differing only in %s are different resources (exact strings)', (_label, a, b) => {
    expect(key(a, ['read'])).not.toBe(key(b, ['read']));
  });

  test('scope sets are exact: a subset or a superset is another entry', () => {
    expect(key('https://api.example', ['read'])).not.toBe(key('https://api.example', ['read', 'write']));
    expect(key('https://api.example', [])).not.toBe(key('https://api.example', ['read']));
  });

  test('delimiters in the parts cannot make two tuples collide', () => {
    const a = tokenCacheKey({ ...holder, clientId: 'svc","x' }, normalizeAccessRequest({ resource: 'https://api.example', scopes: ['read'] }));
    const b = tokenCacheKey({ ...holder, clientId: 'svc' }, normalizeAccessRequest({ resource: 'https://api.example', scopes: ['read'] }));
    expect(a).not.toBe(b);
    // A resource whose text looks like a resource and a scope list.
    expect(key('https://api.example/","read', [])).not.toBe(key('https://api.example/', ['read']));
  });

  test('holder parts and the subject token separate entries', () => {
    const request = normalizeAccessRequest({ resource: 'https://api.example', scopes: ['read'] });
    const keys = new Set([
      tokenCacheKey(holder, request),
      tokenCacheKey({ ...holder, issuer: 'https://other-as.example' }, request),
      tokenCacheKey({ ...holder, clientId: 'other' }, request),
      tokenCacheKey({ ...holder, bindingKey: 'jkt:def' }, request),
      tokenCacheKey(holder, request, 'subject-hash-1'),
      tokenCacheKey(holder, request, 'subject-hash-2'),
    ]);
    expect(keys.size).toBe(6);
  });

  test.each([
    ['a relative resource', { resource: '/orders', scopes: [] }],
    ['a resource with a fragment', { resource: 'https://api.example#x', scopes: [] }],
    ['a resource that is not a string', { resource: 42 as unknown as string, scopes: [] }],
    ['a scope with a space inside a list item', { resource: 'https://api.example', scopes: ['a b'] }],
    ['a scope with a quote', { resource: 'https://api.example', scopes: ['a"b'] }],
    ['a scope with a backslash', { resource: 'https://api.example', scopes: ['a\\b'] }],
    ['an empty scope in a list', { resource: 'https://api.example', scopes: [''] }],
  ])('%s → TypeError', (_label, request) => {
    expect(() => normalizeAccessRequest(request)).toThrow(TypeError);
  });

  test('the memo of requests seen before names each exact form once; a NUL where none belongs is not memoized', () => {
    const forms = [
      { resource: 'https://a.example', scopes: ['x', 'y'] },
      { resource: 'https://a.example', scopes: ['x y'] },
      { resource: 'https://a.example', scopes: 'x y' },
      { resource: 'https://a.example', scopes: ['y', 'x'] },
      { resource: 'https://a.example/', scopes: ['x', 'y'] },
      { resource: 'https://a.example', scopes: [] },
      { resource: 'https://a.example', scopes: '' },
    ];
    expect(new Set(forms.map((form) => requestMemoKey(form))).size).toBe(forms.length);
    expect(requestMemoKey({ resource: 'https://a.example', scopes: ['x\0y'] })).toBeUndefined();
    expect(requestMemoKey({ resource: 'https://a.example\0a\0x', scopes: [] })).toBeUndefined();
    expect(() => normalizeAccessRequest({ resource: 'https://a.example', scopes: ['x\0y'] })).toThrow(TypeError);
    expect(() => normalizeAccessRequest({ resource: 'https://a.example/ x', scopes: [] })).toThrow(TypeError);
  });

  test('normalized scopes are sorted and unique', () => {
    expect(normalizeScopes(['write', 'read', 'write'])).toEqual(['read', 'write']);
  });
});

describe('WWW-Authenticate', () => {
  test('RFC 9449 §9 nonce challenge, and RFC 6750 challenges', () => {
    const challenges = parseChallenges('DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof", algs="ES256 PS256"');
    expect(challenges).toEqual([{ scheme: 'dpop', params: { error: 'use_dpop_nonce', error_description: 'Resource server requires nonce in DPoP proof', algs: 'ES256 PS256' } }]);
    expect(challengeError(parseChallenges('Bearer realm="api", error="invalid_token", error_description="The access token expired"'))).toBe('invalid_token');
  });

  test('several challenges in one header (joined header lines)', () => {
    const challenges = parseChallenges('Bearer realm="api", DPoP algs="ES256", error="invalid_token"');
    expect(challenges.map((challenge) => challenge.scheme)).toEqual(['bearer', 'dpop']);
    expect(challengeError(challenges, 'bearer')).toBeUndefined();
    expect(challengeError(challenges, 'DPoP')).toBe('invalid_token');
    expect(challengeError(challenges)).toBe('invalid_token');
  });

  test('quoted commas and escapes, token values, token68, empty and broken headers', () => {
    expect(parseChallenges('Bearer error_description="a, b \\"c\\"", error=invalid_token')[0]!.params).toEqual({ error_description: 'a, b "c"', error: 'invalid_token' });
    expect(parseChallenges('Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEF==, Bearer error="invalid_token"').map((c) => c.scheme)).toEqual(['negotiate', 'bearer']);
    expect(parseChallenges(null)).toEqual([]);
    expect(parseChallenges('')).toEqual([]);
    expect(parseChallenges('Bearer error="unterminated')).toEqual([{ scheme: 'bearer', params: {} }]);
    expect(parseChallenges('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
    // The first value of a repeated parameter counts.
    expect(parseChallenges('Bearer error="invalid_token", error="insufficient_scope"')[0]!.params.error).toBe('invalid_token');
  });
});

describe('client_secret_basic (RFC 6749 §2.3.1)', () => {
  test('id and secret are form-urlencoded before they are joined', () => {
    const header = basicCredentials('client:one', 'p@ss w:rd+/%&*~!');
    const decoded = Buffer.from(header.replace(/^Basic /, ''), 'base64').toString();
    expect(decoded).toBe('client%3Aone:p%40ss+w%3Ard%2B%2F%25%26*%7E%21');
    const [id, secret] = decoded.split(':').map((part) => decodeURIComponent(part.replace(/\+/g, ' ')));
    expect([id, secret]).toEqual(['client:one', 'p@ss w:rd+/%&*~!']);
  });
});

describe('DPoP proofs (RFC 9449 §4.2)', () => {
  test('a fresh proof per call: htm, htu without query and fragment, iat, a new jti, ath of the token, nonce', async () => {
    const dpopKey = await prepareDpopKey('ES256');
    const target = { htm: 'POST', url: 'https://API.example:443/orders/1?debug=1#top', accessToken: 'the-token', nonce: 'n-1' };
    const [one, two] = await Promise.all([signDpopProof(dpopKey, target, 1_800_000_000_123), signDpopProof(dpopKey, target, 1_800_000_000_123)]);
    const header = decodeProtectedHeader(one);
    expect(header).toMatchObject({ typ: 'dpop+jwt', alg: 'ES256' });
    expect(header.jwk).toEqual(dpopKey.publicJwk);
    expect(header.jwk).not.toHaveProperty('d');
    const { payload } = await jwtVerify(one, await importJWK(header.jwk!, 'ES256'), { typ: 'dpop+jwt' });
    expect(payload).toMatchObject({ htm: 'POST', htu: 'https://api.example/orders/1', iat: 1_800_000_000, ath: accessTokenHash('the-token'), nonce: 'n-1' });
    expect(decodeJwt(two).jti).not.toBe(payload.jti);
    expect(await calculateJwkThumbprint(header.jwk!)).toBe(dpopKey.thumbprint);
  });

  test('a generated key cannot be exported; a given key pair is used as given', async () => {
    const generated = await prepareDpopKey('ES256');
    expect((generated.privateKey as CryptoKey).extractable).toBe(false);
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const given = await prepareDpopKey('EdDSA', pair);
    expect(given.thumbprint).toBe(await calculateJwkThumbprint(await exportJWK(pair.publicKey)));
    await expect(prepareDpopKey('ES256', { privateKey: pair.privateKey, publicKey: (await generateKeyPair('ES256', { extractable: true })).privateKey })).rejects.toThrow(TypeError);
  });

  test('htu and ath', () => {
    expect(htuOf('https://a.example/p/?q#f')).toBe('https://a.example/p/');
    // RFC 9449 §7.1 example.
    expect(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU')).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
  });

  test('nonces are remembered per origin; malformed ones are ignored', () => {
    const nonces = createDpopNonces(2);
    const headers = (nonce: string | null) => ({ get: (name: string) => (name === 'dpop-nonce' ? nonce : null) });
    nonces.remember('https://a.example/token', headers('n-a'));
    expect(nonces.nonceFor('https://a.example/other')).toBe('n-a');
    expect(nonces.nonceFor('https://b.example/')).toBeUndefined();
    expect(nonces.remember('https://a.example/', headers('bad "nonce"'))).toBeUndefined();
    expect(nonces.remember('https://a.example/', headers('x'.repeat(2000)))).toBeUndefined();
    expect(nonces.nonceFor('https://a.example/')).toBe('n-a');
    nonces.remember('https://b.example/', headers('n-b'));
    nonces.remember('https://c.example/', headers('n-c'));
    expect(nonces.nonceFor('https://a.example/')).toBeUndefined();
  });
});

describe('authorization server metadata (RFC 8414)', () => {
  const base = { issuer: 'https://as.example', token_endpoint: 'https://as.example/token' };

  test('well-known URLs: inserted before the path (RFC 8414 §3.1), then OpenID Connect\'s', () => {
    expect(discoveryUrls('https://as.example')).toEqual(['https://as.example/.well-known/oauth-authorization-server', 'https://as.example/.well-known/openid-configuration']);
    expect(discoveryUrls('https://as.example/tenant/a')).toEqual(['https://as.example/.well-known/oauth-authorization-server/tenant/a', 'https://as.example/tenant/a/.well-known/openid-configuration']);
  });

  test.each([
    ['another issuer (mix-up, RFC 8414 §3.3)', { ...base, issuer: 'https://evil.example' }],
    ['the issuer with a trailing slash', { ...base, issuer: 'https://as.example/' }],
    ['an http token endpoint', { ...base, token_endpoint: 'http://as.example/token' }],
    ['no token endpoint', { issuer: base.issuer }],
    ['an http mTLS alias', { ...base, mtls_endpoint_aliases: { token_endpoint: 'http://mtls.as.example/token' } }],
    ['aliases that are not an object', { ...base, mtls_endpoint_aliases: 'https://mtls.as.example/token' }],
    ['auth methods that are not a list of strings', { ...base, token_endpoint_auth_methods_supported: 'private_key_jwt' }],
  ])('%s → ERR_DISCOVERY_FAILED', (_label, metadata) => {
    let code: string | undefined;
    try {
      checkMetadata(metadata, 'https://as.example');
    } catch (error) {
      code = isClientError(error) ? error.code : 'other';
    }
    expect(code).toBe('ERR_DISCOVERY_FAILED');
  });

  test('the mTLS alias of the token endpoint is used by a client presenting a certificate (RFC 8705 §5)', () => {
    const metadata = checkMetadata({ ...base, mtls_endpoint_aliases: { token_endpoint: 'https://mtls.as.example/token' } }, 'https://as.example');
    expect(tokenEndpointOf(metadata, true)).toBe('https://mtls.as.example/token');
    expect(tokenEndpointOf(metadata, false)).toBe('https://as.example/token');
  });
});

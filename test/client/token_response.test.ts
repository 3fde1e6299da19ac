// The check of a token endpoint answer, one property wrong at a time: each must be refused with its
// own code before the token is cached or sent anywhere.
import { UnsecuredJWT } from 'jose';
import { isClientError, type ClientErrorCode } from '../../packages/client/src/errors.js';
import { acceptTokenResponse, type BindingExpectation, type ExpectedToken } from '../../packages/client/src/token_response.js';

const RESOURCE = 'https://orders.example.test';
const NOW = 1_800_000_000_000;
const JKT = 'dpop-key-thumbprint';
const X5T = 'certificate-thumbprint';

const dpop: BindingExpectation = { method: 'dpop', jkt: JKT };
const mtls: BindingExpectation = { method: 'mtls', x5tS256: X5T };

function expected(overrides: Partial<ExpectedToken> = {}): ExpectedToken {
  return { request: { resource: RESOURCE, scopes: ['orders:read', 'orders:write'] }, binding: dpop, obtainedAt: NOW - 50, now: NOW, ...overrides };
}

function jwt(claims: Record<string, unknown>): string {
  return new UnsecuredJWT({ aud: RESOURCE, scope: 'orders:read', exp: NOW / 1000 + 300, cnf: { jkt: JKT }, ...claims }).encode();
}

function refusal(body: Record<string, unknown>, expectation: ExpectedToken = expected()): ClientErrorCode | 'accepted' {
  try {
    acceptTokenResponse(body, expectation);
    return 'accepted';
  } catch (error) {
    if (isClientError(error)) return error.code;
    throw error;
  }
}

const good = () => ({ access_token: jwt({}), token_type: 'DPoP', expires_in: 300, scope: 'orders:read' });

test('a good answer: the granted scopes, expiry from the request time and exp, the decoded claims', () => {
  const token = acceptTokenResponse(good(), expected());
  expect(token).toMatchObject({ type: 'DPoP', resource: RESOURCE, scopes: ['orders:read'], obtainedAt: NOW - 50, expiresAt: NOW - 50 + 300_000 });
  expect(token.claims?.aud).toBe(RESOURCE);
});

test('expiry is the earliest of expires_in and exp', () => {
  const token = acceptTokenResponse({ ...good(), access_token: jwt({ exp: NOW / 1000 + 60 }) }, expected());
  expect(token.expiresAt).toBe(NOW + 60_000);
});

test('token_type is case-insensitive (RFC 6749 §5.1)', () => {
  expect(refusal({ ...good(), token_type: 'dpop' })).toBe('accepted');
});

test.each<[string, ClientErrorCode, Record<string, unknown>]>([
  ['no access_token', 'ERR_TOKEN_RESPONSE_INVALID', { token_type: 'DPoP', expires_in: 300 }],
  ['access_token a number', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 12, token_type: 'DPoP', expires_in: 300 }],
  ['access_token with CRLF (header injection)', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'abc\r\nX-Evil: 1', token_type: 'DPoP', expires_in: 300 }],
  ['access_token with a space', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'abc def', token_type: 'DPoP', expires_in: 300 }],
  ['access_token empty', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: '', token_type: 'DPoP', expires_in: 300 }],
  ['access_token of 20 kB', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'a'.repeat(20_000), token_type: 'DPoP', expires_in: 300 }],
  ['no token_type', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'opaque', expires_in: 300 }],
  ['token_type MAC', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'opaque', token_type: 'MAC', expires_in: 300 }],
  ['expires_in not a number', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'opaque', token_type: 'DPoP', expires_in: 'soon' }],
  ['expires_in 0', 'ERR_TOKEN_EXPIRED', { access_token: 'opaque', token_type: 'DPoP', expires_in: 0 }],
  ['expires_in negative', 'ERR_TOKEN_EXPIRED', { access_token: 'opaque', token_type: 'DPoP', expires_in: -30 }],
  ['scope not a string', 'ERR_TOKEN_RESPONSE_INVALID', { access_token: 'opaque', token_type: 'DPoP', expires_in: 300, scope: ['orders:read'] }],
  ['scope wider than requested', 'ERR_TOKEN_SCOPE', { access_token: 'opaque', token_type: 'DPoP', expires_in: 300, scope: 'orders:read admin' }],
])('%s → %s', (_label, code, body) => {
  expect(refusal(body)).toBe(code);
});

describe('JWT access tokens: aud, scope, exp and cnf are read (not verified) and must match', () => {
  test.each<[string, ClientErrorCode, Record<string, unknown>]>([
    ['aud another API', 'ERR_TOKEN_AUDIENCE', { aud: 'https://payments.example.test' }],
    ['aud with a trailing slash', 'ERR_TOKEN_AUDIENCE', { aud: `${RESOURCE}/` }],
    ['aud in upper case', 'ERR_TOKEN_AUDIENCE', { aud: RESOURCE.toUpperCase() }],
    ['aud two APIs, the requested one among them', 'ERR_TOKEN_AUDIENCE', { aud: [RESOURCE, 'https://payments.example.test'] }],
    ['no aud', 'ERR_TOKEN_AUDIENCE', { aud: undefined }],
    ['scope claim wider', 'ERR_TOKEN_SCOPE', { scope: 'orders:read orders:admin' }],
    ['scp claim wider', 'ERR_TOKEN_SCOPE', { scp: ['orders:read', 'orders:admin'] }],
    ['exp passed', 'ERR_TOKEN_EXPIRED', { exp: NOW / 1000 - 1 }],
    ['exp not a number', 'ERR_TOKEN_RESPONSE_INVALID', { exp: 'tomorrow' }],
    ['cnf.jkt of another key', 'ERR_TOKEN_BINDING', { cnf: { jkt: 'another-key' } }],
    ['no cnf (unbound)', 'ERR_TOKEN_BINDING', { cnf: undefined }],
  ])('%s → %s', (_label, code, claims) => {
    expect(refusal({ ...good(), access_token: jwt(claims) })).toBe(code);
  });

  test('aud as a list holding only the resource is the resource', () => {
    expect(refusal({ ...good(), access_token: jwt({ aud: [RESOURCE] }) })).toBe('accepted');
  });

  test('the response scope within, the claim wider: refused all the same', () => {
    expect(refusal({ ...good(), scope: 'orders:read', access_token: jwt({ scope: 'orders:read admin' }) })).toBe('ERR_TOKEN_SCOPE');
  });
});

describe('opaque tokens: only the answer can be checked', () => {
  test('no scope member: the requested scopes were granted (RFC 6749 §5.1)', () => {
    const token = acceptTokenResponse({ access_token: 'opaque-token', token_type: 'DPoP', expires_in: 60 }, expected());
    expect(token).toMatchObject({ scopes: ['orders:read', 'orders:write'], claims: undefined, expiresAt: NOW - 50 + 60_000 });
  });

  test('no expires_in: the lifetime is unknown (never cached)', () => {
    expect(acceptTokenResponse({ access_token: 'opaque-token', token_type: 'DPoP' }, expected()).expiresAt).toBeUndefined();
  });

  test('a string of digits as expires_in is taken', () => {
    expect(acceptTokenResponse({ access_token: 'opaque-token', token_type: 'DPoP', expires_in: '120' }, expected()).expiresAt).toBe(NOW - 50 + 120_000);
  });
});

describe('binding', () => {
  test('DPoP asked, Bearer answered → refused (the token would be unbound)', () => {
    expect(refusal({ ...good(), token_type: 'Bearer' })).toBe('ERR_TOKEN_BINDING');
  });

  test('certificate-bound: Bearer with cnf.x5t#S256 of the certificate', () => {
    const body = { access_token: jwt({ cnf: { 'x5t#S256': X5T } }), token_type: 'Bearer', expires_in: 300 };
    expect(refusal(body, expected({ binding: mtls }))).toBe('accepted');
    expect(refusal({ ...body, access_token: jwt({ cnf: { 'x5t#S256': 'other' } }) }, expected({ binding: mtls }))).toBe('ERR_TOKEN_BINDING');
    expect(refusal({ ...body, token_type: 'DPoP' }, expected({ binding: mtls }))).toBe('ERR_TOKEN_BINDING');
  });

  test('bearer asked: a bound token cannot be presented → refused', () => {
    const body = { access_token: jwt({ cnf: { 'x5t#S256': X5T } }), token_type: 'Bearer', expires_in: 300 };
    expect(refusal(body, expected({ binding: { method: 'bearer' } }))).toBe('ERR_TOKEN_BINDING');
    expect(refusal({ ...body, access_token: jwt({ cnf: undefined }) }, expected({ binding: { method: 'bearer' } }))).toBe('accepted');
  });
});

describe('exchange (RFC 8693 §2.2.1)', () => {
  test('issued_token_type is required and must be access_token', () => {
    expect(refusal(good(), expected({ exchange: true }))).toBe('ERR_TOKEN_RESPONSE_INVALID');
    expect(refusal({ ...good(), issued_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, expected({ exchange: true }))).toBe('ERR_TOKEN_RESPONSE_INVALID');
    expect(refusal({ ...good(), issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, expected({ exchange: true }))).toBe('accepted');
  });

  test('the subject token\'s expiry bounds the exchanged token\'s', () => {
    const token = acceptTokenResponse({ ...good(), issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, expected({ exchange: true, notAfter: NOW + 10_000 }));
    expect(token.expiresAt).toBe(NOW + 10_000);
  });
});

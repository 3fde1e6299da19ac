import { Refusal } from '../../../src/oauth/refusal.js';
import { parseExchangeRequest } from '../../../src/grants/token_exchange/parse_request.js';
import { TOKEN_TYPE } from '../../../src/oauth/token_exchange_urns.js';

const TARGET = 'https://c.chain.test';
const base = { subject_token: 'token-value', subject_token_type: TOKEN_TYPE.accessToken, resource: TARGET };

function refusal(params: Record<string, unknown>): Refusal {
  try {
    parseExchangeRequest(params);
  } catch (error) {
    if (error instanceof Refusal) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseExchangeRequest (RFC 8693 §2.1)', () => {
  test('a minimal request', () => {
    expect(parseExchangeRequest(base)).toEqual({
      subject: { value: 'token-value', type: 'access_token' },
      actor: undefined,
      target: TARGET,
      targetParameter: 'resource',
      scope: undefined,
    });
  });

  test('jwt subject type, actor token, audience, scope and requested_token_type access_token', () => {
    expect(parseExchangeRequest({
      subject_token: 's', subject_token_type: TOKEN_TYPE.jwt,
      actor_token: 'a', actor_token_type: TOKEN_TYPE.accessToken,
      audience: TARGET, scope: 'orders:read', requested_token_type: TOKEN_TYPE.accessToken,
    })).toEqual({
      subject: { value: 's', type: 'jwt' },
      actor: { value: 'a', type: 'access_token' },
      target: TARGET,
      targetParameter: 'audience',
      scope: 'orders:read',
    });
  });

  test.each([
    ['no subject_token', { ...base, subject_token: undefined }],
    ['an empty subject_token', { ...base, subject_token: '' }],
    ['no subject_token_type', { ...base, subject_token_type: undefined }],
    ['a doubled subject_token', { ...base, subject_token: ['a', 'b'] }],
    ['a refresh token as subject', { ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }],
    ['an ID token as actor', { ...base, actor_token: 'a', actor_token_type: 'urn:ietf:params:oauth:token-type:id_token' }],
    ['an unknown subject type', { ...base, subject_token_type: 'access_token' }],
    ['actor_token without actor_token_type', { ...base, actor_token: 'a' }],
    ['actor_token_type without actor_token', { ...base, actor_token_type: TOKEN_TYPE.accessToken }],
    ['an unsupported actor_token_type', { ...base, actor_token: 'a', actor_token_type: 'urn:ietf:params:oauth:token-type:saml2' }],
    ['requested_token_type refresh_token', { ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }],
    ['requested_token_type jwt', { ...base, requested_token_type: TOKEN_TYPE.jwt }],
  ])('%s → invalid_request', (_label, params) => {
    expect(refusal(params).error).toBe('invalid_request');
  });

  test('an ID token as subject is parsed: only a trusted external issuer\'s is exchanged (docs/federation.md)', () => {
    expect(parseExchangeRequest({ ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }).subject)
      .toEqual({ value: base.subject_token, type: 'id_token' });
  });

  test.each([
    ['no resource or audience', { ...base, resource: undefined }],
    ['two resources', { ...base, resource: [TARGET, 'https://d.chain.test'] }],
    ['the same resource twice', { ...base, resource: [TARGET, TARGET] }],
    ['a resource and an audience', { ...base, audience: TARGET }],
    ['two audiences', { ...base, resource: undefined, audience: [TARGET, TARGET] }],
  ])('%s → invalid_target (one token, one audience)', (_label, params) => {
    expect(refusal(params).error).toBe('invalid_target');
  });
});

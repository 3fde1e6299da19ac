// Error rendering: RFC 6750 §3 / RFC 9449 §7.1 challenges with RFC 9728 §5.1 resource_metadata.
import { toHttpError, VerifierError, VERIFIER_ERROR_CODES, type ChallengeOptions } from '../../src/resource_server/index.js';

const options: ChallengeOptions = {
  realm: 'https://api.test/orders',
  resourceMetadataUrl: 'https://api.test/.well-known/oauth-protected-resource/orders',
  dpopAlgorithms: ['ES256', 'PS256', 'EdDSA'],
};
const RM = 'resource_metadata="https://api.test/.well-known/oauth-protected-resource/orders"';

function withScheme(err: VerifierError, scheme: 'Bearer' | 'DPoP' | undefined): VerifierError {
  err.scheme = scheme;
  return err;
}

test('invalid_token on the Bearer scheme: the Bearer challenge carries the error, DPoP is offered too', () => {
  const res = toHttpError(withScheme(new VerifierError('ERR_TOKEN_AUDIENCE', 'access token is not meant for this resource'), 'Bearer'), options);
  expect(res.status).toBe(401);
  expect(res.headers['www-authenticate']).toEqual([
    `Bearer realm="https://api.test/orders", error="invalid_token", error_description="access token is not meant for this resource", ${RM}`,
    `DPoP realm="https://api.test/orders", algs="ES256 PS256 EdDSA", ${RM}`,
  ]);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.body).toEqual({ error: 'invalid_token', error_description: 'access token is not meant for this resource' });
});

test('errors of a DPoP request: the DPoP challenge carries the error and algs, Bearer is offered without error', () => {
  const res = toHttpError(withScheme(new VerifierError('ERR_DPOP_PROOF_HTU', 'DPoP proof htu does not match the request URL'), 'DPoP'), options);
  expect(res.status).toBe(401);
  expect(res.headers['www-authenticate']).toEqual([
    `DPoP realm="https://api.test/orders", error="invalid_dpop_proof", error_description="DPoP proof htu does not match the request URL", algs="ES256 PS256 EdDSA", ${RM}`,
    `Bearer realm="https://api.test/orders", ${RM}`,
  ]);
});

test('insufficient_scope: 403 with scope="..."', () => {
  const err = withScheme(new VerifierError('ERR_TOKEN_SCOPE', 'access token lacks a required scope', { requiredScopes: ['orders:read', 'orders:admin'] }), 'Bearer');
  const res = toHttpError(err, options);
  expect(res.status).toBe(403);
  expect(res.headers['www-authenticate']?.[0]).toBe(
    `Bearer realm="https://api.test/orders", error="insufficient_scope", error_description="access token lacks a required scope", scope="orders:read orders:admin", ${RM}`,
  );
});

test('no credentials: challenges without an error code (RFC 6750 §3.1)', () => {
  const res = toHttpError(new VerifierError('ERR_NO_CREDENTIALS', 'no access token'), options);
  expect(res.status).toBe(401);
  expect(res.headers['www-authenticate']).toEqual([`Bearer realm="https://api.test/orders", ${RM}`, `DPoP realm="https://api.test/orders", algs="ES256 PS256 EdDSA", ${RM}`]);
});

test('use_dpop_nonce carries the DPoP-Nonce header (RFC 9449 §9)', () => {
  const err = withScheme(new VerifierError('ERR_DPOP_NONCE', 'DPoP proof must carry the server nonce', { dpopNonce: 'n-123' }), 'DPoP');
  const res = toHttpError(err, options);
  expect(res.headers['dpop-nonce']).toBe('n-123');
  expect(res.headers['www-authenticate']?.[0]).toMatch(/^DPoP realm="[^"]+", error="use_dpop_nonce", /);
});

test('invalid_request is 400 with a challenge', () => {
  const res = toHttpError(withScheme(new VerifierError('ERR_AUTHORIZATION_HEADER', 'Authorization header is malformed'), 'Bearer'), options);
  expect(res.status).toBe(400);
  expect(res.headers['www-authenticate']?.[0]).toContain('error="invalid_request"');
});

test('issuer outages are 503 with Retry-After and no challenge', () => {
  const res = toHttpError(new VerifierError('ERR_JWKS_UNAVAILABLE', 'the issuer keys are unavailable'), options);
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toBe('5');
  expect(res.headers['www-authenticate']).toBeUndefined();
  expect(res.body.error).toBe('temporarily_unavailable');
});

test('anything that is not a VerifierError is a bare 500', () => {
  expect(toHttpError(new TypeError('boom'), options)).toEqual({
    status: 500,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: { error: 'server_error' },
  });
});

test('parameter values are quoted safely', () => {
  const res = toHttpError(withScheme(new VerifierError('ERR_TOKEN_SCOPE', 'a "quoted" \\ thing\n', { requiredScopes: ['é"x'] }), 'Bearer'), {
    realm: 'my "realm"\r\n',
  });
  const challenge = (res.headers['www-authenticate'] as string[])[0] as string;
  expect(challenge).toBe('Bearer realm="my \\"realm\\"", error="insufficient_scope", error_description="a  quoted    thing ", scope="  x"');
  expect(challenge).not.toMatch(/[\r\n]/);
});

test('without options: a bare Bearer challenge', () => {
  const res = toHttpError(withScheme(new VerifierError('ERR_TOKEN_EXPIRED', 'access token has expired'), 'Bearer'));
  expect(res.headers['www-authenticate']).toEqual(['Bearer error="invalid_token", error_description="access token has expired"']);
});

test('every error code renders a client error or an outage, never a 500, except ERR_INTERNAL', () => {
  for (const code of Object.keys(VERIFIER_ERROR_CODES) as (keyof typeof VERIFIER_ERROR_CODES)[]) {
    const res = toHttpError(new VerifierError(code, 'x'), options);
    if (code === 'ERR_INTERNAL') expect(res.status).toBe(500);
    else expect([400, 401, 403, 503]).toContain(res.status);
  }
});

// RFC 9728 protected resource metadata.
import { buildProtectedResourceMetadata, createVerifier, protectedResourceMetadataUrl } from '../../src/resource_server/index.js';

test('the metadata URL inserts the well-known segment before the resource path (RFC 9728 §3.1)', () => {
  expect(protectedResourceMetadataUrl('https://api.test/orders')).toBe('https://api.test/.well-known/oauth-protected-resource/orders');
  expect(protectedResourceMetadataUrl('https://api.test')).toBe('https://api.test/.well-known/oauth-protected-resource');
  expect(protectedResourceMetadataUrl('https://api.test/')).toBe('https://api.test/.well-known/oauth-protected-resource');
  expect(protectedResourceMetadataUrl('https://api.test:8443/a/b')).toBe('https://api.test:8443/.well-known/oauth-protected-resource/a/b');
  expect(protectedResourceMetadataUrl('urn:example:api')).toBeUndefined();
  expect(protectedResourceMetadataUrl('https://api.test/x?y=1')).toBeUndefined();
});

test('the document reflects the verifier configuration', () => {
  const verifier = createVerifier({ issuer: 'https://issuer.test', audience: 'https://api.test/orders', jwks: { keys: [] } });
  expect(buildProtectedResourceMetadata(verifier.settings, { scopesSupported: ['orders:read'], resourceName: 'Orders' })).toEqual({
    resource: 'https://api.test/orders',
    authorization_servers: ['https://issuer.test'],
    scopes_supported: ['orders:read'],
    bearer_methods_supported: ['header'],
    dpop_signing_alg_values_supported: ['ES256', 'PS256', 'EdDSA', 'Ed25519'],
    tls_client_certificate_bound_access_tokens: true,
    dpop_bound_access_tokens_required: false,
    resource_name: 'Orders',
  });
  const dpopOnly = createVerifier({ issuer: 'https://issuer.test', audience: 'https://api.test/orders', jwks: { keys: [] }, dpop: { algorithms: ['EdDSA'] } });
  expect(
    buildProtectedResourceMetadata(dpopOnly.settings, { dpopBoundAccessTokensRequired: true, tlsClientCertificateBoundAccessTokens: false }),
  ).toMatchObject({ dpop_signing_alg_values_supported: ['EdDSA'], dpop_bound_access_tokens_required: true, tls_client_certificate_bound_access_tokens: false });
  const noDpop = createVerifier({ issuer: 'https://issuer.test', audience: 'https://api.test/orders', jwks: { keys: [] }, dpop: false });
  expect(buildProtectedResourceMetadata(noDpop.settings)).not.toHaveProperty('dpop_signing_alg_values_supported');
});

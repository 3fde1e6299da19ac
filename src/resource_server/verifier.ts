// Kept for imports of the module's former path; the verifier lives in tether-oauth-resource-server.
export { createVerifier, DEFAULT_JWKS_MAX_AGE_MS } from 'tether-oauth-resource-server';

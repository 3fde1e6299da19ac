// Kept for imports of the module's former path; the verifier lives in tether-oauth-resource-server.
export { DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS } from 'tether-oauth-resource-server';
export type { SupportedAlgorithm } from 'tether-oauth-resource-server';

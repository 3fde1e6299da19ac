// Kept for imports of the module's former path; the verifier lives in tether-oauth-resource-server.
export { discoveryUrls } from 'tether-oauth-resource-server';

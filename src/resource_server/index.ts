/**
 * `tether-oauth/resource-server`: the verifier, re-exported from its own package
 * `tether-oauth-resource-server` (packages/resource-server), which an API installs without the
 * server. Kept so that existing imports keep working; new code imports the package.
 *
 * @packageDocumentation
 */
export * from 'tether-oauth-resource-server';

/**
 * `tether-oauth/testing`: a real Tether inside your test process, real tokens for your API, and tokens
 * that are wrong in exactly one way — to prove that your API enforces audience, lifetime, signature,
 * sender binding and scope.
 *
 * ```ts
 * import { startTether } from 'tether-oauth/testing';
 *
 * const tether = await startTether({ config: { resources: [...], clients: [...] } });
 * const token = await tether.token({ client: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read' });
 * const response = await tether.fetchWith(token)('https://localhost:9443/orders');   // certificate or DPoP proof presented
 *
 * const report = await tether.probe({ url: 'https://localhost:9443/orders', client: 'orders-worker',
 *   resource: 'https://orders.example.test', scope: 'orders:read' });
 * expect(report.ok ? '' : formatProbeTable(report)).toBe('');   // on failure, shows the table
 * await tether.close();
 * ```
 *
 * - {@link startTether} starts Tether in-process on a loopback port (HTTPS, asking for client
 *   certificates) over an in-memory PGlite loaded from a migrated snapshot, with a throwaway PKI:
 *   a few hundred milliseconds. Instances share nothing mutable; run as many as you like, in jest,
 *   `node:test` or any other runner.
 * - `tether.token()` / `tether.exchange()` obtain tokens through the real token endpoint
 *   (`client_credentials`, RFC 8693 exchange) for a configured client, with its certificate from the
 *   harness PKI or a DPoP key made for it; `tether.fetchWith(token)` presents a token the way a
 *   correct client does (a fresh DPoP proof with `ath` per request).
 * - `tether.badTokens()` is the catalogue of bad requests ({@link BadTokenCase}): wrong or another
 *   API's `aud`, expired, `nbf` ahead, wrong `iss`, `typ` JWT, `alg` none, HS256 keyed with the public
 *   key, unknown `kid`, a foreign key, missing or foreign `cnf`, no certificate, DPoP proofs with
 *   wrong `htm`/`htu`/`ath` or replayed, a scope missing, revoked — each with the answer a correct
 *   API gives. Validly signed ones carry Tether's real signature, so only the named property is wrong.
 * - `tether.probe()` / {@link runProbe} send the catalogue to one API URL and judge every answer;
 *   `tether probe <url>` does the same from the command line.
 *
 * @packageDocumentation
 */
export { startTether } from './start_tether.js';
export type { RunningTether, StartTetherOptions } from './start_tether.js';
export type { BadTokenRequest, HarnessExchangeRequest, HarnessProbeRequest, HarnessTokenRequest, HarnessTokens } from './harness_tokens.js';
export type { CredentialOverrides } from './configured_clients.js';
export { createTokenClient, TokenEndpointError } from './token_client.js';
export type { AccessTokenRequest, ClientCredentials, ExchangeRequest, IssuedAccessToken, TokenClient, TokenEndpoints } from './token_client.js';
export { createTokenFetch } from './token_fetch.js';
export type { TokenFetch, TokenFetchOptions } from './token_fetch.js';
export { createAgentPool } from './agents.js';
export type { AgentPool, PresentedCertificate } from './agents.js';
export { createDpopKey, dpopProof } from './dpop.js';
export type { DpopKey, DpopProofClaims } from './dpop.js';
export {
  badTokenCatalogue, bindingOf, EXPIRED_SECONDS_AGO, FOREIGN_AUDIENCE, FOREIGN_ISSUER, NOT_BEFORE_SECONDS_AHEAD,
} from './token_factory.js';
export type { BadTokenCase, BadTokenInputs, ExpectedAnswer, Presentation, TargetRequest, TokenBinding } from './token_factory.js';
export { loadTetherSigningKey } from './signing_key.js';
export type { TetherSigningKey } from './signing_key.js';
export { runProbe } from './probe.js';
export type { CheckResult, ProbeOptions, ProbeReport, ProbeTarget, Verdict } from './probe.js';
export { formatProbeJson, formatProbeTable, formatThroughJson, formatThroughTable } from './probe_report.js';
export { runProbeThrough } from './probe_through.js';
export type { Enforcement, ProbeThroughOptions, ThroughCheckResult, ThroughReport } from './probe_through.js';
export { connectToTether, remoteBadTokens } from './remote_tether.js';
export type { RemoteBadTokenRequest, RemoteTetherOptions } from './remote_tether.js';

/**
 * Use reports from `tether authz` (docs/use-reports.md): what the forward-auth server judged goes to
 * Tether's use-report endpoint, as from any API's verifier. The reporter authenticates as the API's
 * own client with its certificate (`tls_client_auth`, certificate-bound tokens for the use-report
 * resource, RFC 8705), got through the token endpoint and reused until shortly before they expire.
 */
import { readFile } from 'node:fs/promises';
import { fetch } from 'undici';
import { createUseReporter, type FetchLike, type UseReporter } from 'tether-oauth-resource-server';
import type { AuthzConfig } from '../config/authz_config.js';
import { createAgentPool, type AgentPool } from '../testing/agents.js';
import { connectToTether } from '../testing/remote_tether.js';
import type { IssuedAccessToken } from '../testing/token_client.js';

/** A token is fetched again this long before it expires, so that no report goes with a stale one. */
const RENEW_BEFORE_EXPIRY_MS = 30_000;

/** The reporter of a configuration's `report` section, and the connections it owns. */
export interface AuthzUseReporter {
  readonly reporter: UseReporter;
  /** Sends what is left (one last attempt), then closes the connections. */
  close(): Promise<void>;
}

/** Creates the reporter; nothing is contacted until the first report is due. */
export async function createAuthzUseReporter(config: AuthzConfig, ca: string | undefined, onError?: (error: Error) => void): Promise<AuthzUseReporter | undefined> {
  const report = config.report;
  if (report === undefined) return undefined;
  const [certificatePem, privateKeyPem] = await Promise.all([readFile(report.certFile, 'utf8'), readFile(report.keyFile, 'utf8')]);
  const certificate = { certificatePem, privateKeyPem };
  const agents: AgentPool = createAgentPool(ca);
  const dispatcher = agents.agentFor(certificate);
  let client: ReturnType<typeof connectToTether> | undefined;
  let current: { token: IssuedAccessToken; renewAt: number } | undefined;

  async function token(): Promise<IssuedAccessToken> {
    if (current !== undefined && Date.now() < current.renewAt) return current.token;
    client ??= connectToTether({ issuer: config.issuer, ca, credentials: { clientId: report!.clientId, certificate }, agents });
    // A failed discovery is tried again with the next report, not remembered.
    const connected = await client.catch((error: unknown) => {
      client = undefined;
      throw error;
    });
    const issued = await connected.clientCredentials({ resource: report!.resource });
    current = { token: issued, renewAt: Date.now() + Math.max(0, issued.expiresIn * 1000 - RENEW_BEFORE_EXPIRY_MS) };
    return issued;
  }

  const reporter = createUseReporter({
    issuer: config.issuer,
    endpoint: report.endpoint,
    resource: config.audience,
    // The connection presents the certificate the reporting token is bound to.
    fetch: ((input: string, init?: object) => fetch(input, { ...init, dispatcher })) as unknown as FetchLike,
    authorize: async () => ({ authorization: `Bearer ${(await token()).accessToken}` }),
    ...(report.flushIntervalMs === undefined ? {} : { flushIntervalMs: report.flushIntervalMs }),
    ...(onError === undefined ? {} : { onError }),
  });
  return {
    reporter,
    async close() {
      await reporter.close();
      await agents.close();
    },
  };
}

import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

/**
 * The "corporate IdP": a second, stock oidc-provider instance (not Tether, not written for this
 * test) on loopback HTTP, issuing RFC 9068 JWT access tokens by client_credentials for any
 * resource, ES256-signed with a key of its own and published at its discovery document's jwks_uri.
 */
export interface CorporateIdp {
  issuer: string;
  /** A client_credentials access token of `clientId` for `resource` (its `aud`). */
  accessToken(clientId: string, resource: string): Promise<string>;
  /** Stops answering (connections refused): the IdP is down. */
  stop(): Promise<void>;
}

export const CORPORATE_CLIENTS = ['corp-batch', 'corp-other'] as const;
const SECRET = 'corporate-idp-secret-0123456789';

export async function startCorporateIdp(): Promise<CorporateIdp> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const provider = new Provider(issuer, {
    clients: CORPORATE_CLIENTS.map((clientId) => ({
      client_id: clientId, client_secret: SECRET, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'corp-1', alg: 'ES256', use: 'sig' }] as never },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined as never,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({ scope: 'profile', audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
      },
    },
  });
  server.on('request', provider.callback());

  return {
    issuer,
    async accessToken(clientId, resource) {
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${clientId}:${SECRET}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'profile' }),
      });
      const body = await response.json() as { access_token?: string };
      if (response.status !== 200 || !body.access_token) throw new Error(`corporate IdP answered ${response.status}: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * The credentials of a client named in Tether's configuration, as the harness can provide them: its
 * certificate from the PKI, its secret from the configuration, and a DPoP key made for it.
 */
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import { issueClientCertificate, type CertificateAndKey, type Pki } from '../keys/dev_pki.js';
import type { PresentedCertificate } from './agents.js';
import { createDpopKey, type DpopKey } from './dpop.js';
import type { ClientCredentials } from './token_client.js';

/** Overrides for {@link ClientCredentialsSource.credentialsFor}. */
export interface CredentialOverrides {
  /** The DPoP key for a DPoP-bound client (default: a new ES256 key per call). */
  readonly dpopKey?: DpopKey;
  /** The certificate to present (required for `self_signed_tls_client_auth`; default: the PKI's). */
  readonly certificate?: PresentedCertificate & { readonly thumbprint?: string };
}

/** Hands out credentials for configured clients. */
export interface ClientCredentialsSource {
  credentialsFor(clientId: string, overrides?: CredentialOverrides): Promise<ClientCredentials>;
}

/**
 * Credentials from `config` and `pki`. A certificate-bound client that authenticates with a secret has
 * no certificate in the PKI; it gets one issued by the PKI's CA on first use, then always that one.
 */
export function configuredClients(config: TetherConfig, pki: Pki): ClientCredentialsSource {
  const issued = new Map<string, Promise<CertificateAndKey>>();

  function certificateOf(client: ClientConfig): Promise<CertificateAndKey> | undefined {
    const fromPki = pki.clients[client.id];
    if (fromPki) return Promise.resolve(fromPki);
    if (client.binding !== 'mtls') return undefined;
    let certificate = issued.get(client.id);
    if (!certificate) {
      certificate = issueClientCertificate(pki, client.id);
      issued.set(client.id, certificate);
    }
    return certificate;
  }

  return {
    async credentialsFor(clientId, overrides = {}) {
      const client = config.clients.find((candidate) => candidate.id === clientId);
      if (!client) throw new TypeError(`no client ${JSON.stringify(clientId)} in the configuration`);
      const { auth } = client;
      if (auth.method === 'private_key_jwt') {
        throw new TypeError(`client ${clientId} uses private_key_jwt, which the harness cannot sign for; use another client`);
      }
      if (auth.method === 'self_signed_tls_client_auth' && !overrides.certificate) {
        throw new TypeError(`client ${clientId} uses self_signed_tls_client_auth: pass the certificate its jwks registers`);
      }
      const certificate = overrides.certificate ?? (await certificateOf(client));
      return {
        clientId,
        ...(certificate ? { certificate } : {}),
        ...(auth.method === 'client_secret_basic' || auth.method === 'client_secret_post'
          ? { secret: { value: auth.secret, method: auth.method } }
          : {}),
        ...(client.binding === 'dpop' ? { dpopKey: overrides.dpopKey ?? (await createDpopKey()) } : {}),
      };
    },
  };
}

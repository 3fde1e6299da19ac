/**
 * The connections the client makes: undici agents that trust the configured CA and, where the
 * client authenticates or binds its tokens with a certificate (RFC 8705), present it.
 *
 * @module
 */
import { createHash, X509Certificate } from 'node:crypto';
import { Agent, type Dispatcher, type RequestInit, type Response } from 'undici';

/** undici's `fetch`, or anything with its signature (a test double). */
export type FetchFunction = (input: string, init: RequestInit) => Promise<Response>;

/** TLS settings of the client's connections (PEM strings, as Node's `tls` options take them). */
export interface TlsOptions {
  /** The client certificate (chain) to present: for `tls_client_auth`, `self_signed_tls_client_auth`, and certificate-bound tokens. */
  readonly cert?: string;
  /** Its private key. */
  readonly key?: string;
  readonly passphrase?: string;
  /** CA certificates to trust for the authorization server and the APIs (default: Node's). */
  readonly ca?: string | readonly string[];
}

/** The two dispatchers: one for the token endpoint, one for the APIs. */
export interface Transport {
  readonly tokenEndpoint: Dispatcher;
  readonly api: Dispatcher;
  close(): Promise<void>;
}

/**
 * Agents for a client. The certificate goes to the token endpoint when the client authenticates or
 * binds with it, and to APIs only for certificate-bound tokens: elsewhere it would only identify the
 * client to servers that have no use for it.
 */
export function createTransport(tls: TlsOptions, use: { tokenEndpoint: boolean; api: boolean }): Transport {
  const connect = (withCertificate: boolean) => ({
    ...(tls.ca === undefined ? {} : { ca: tls.ca as string | string[] }),
    ...(withCertificate ? { cert: tls.cert, key: tls.key, ...(tls.passphrase === undefined ? {} : { passphrase: tls.passphrase }) } : {}),
  });
  const withCertificate = use.tokenEndpoint || use.api ? new Agent({ connect: connect(true) }) : undefined;
  const without = !use.tokenEndpoint || !use.api ? new Agent({ connect: connect(false) }) : undefined;
  const agents = [withCertificate, without].filter((agent): agent is Agent => agent !== undefined);
  return {
    tokenEndpoint: (use.tokenEndpoint ? withCertificate : without)!,
    api: (use.api ? withCertificate : without)!,
    async close() {
      await Promise.all(agents.map((agent) => (agent.closed ? undefined : agent.close())));
    },
  };
}

/** RFC 8705 §3.1: `x5t#S256` is the base64url SHA-256 of the DER certificate (the first of a chain). */
export function certificateThumbprint(certificatePem: string): string {
  return createHash('sha256').update(new X509Certificate(certificatePem).raw).digest('base64url');
}

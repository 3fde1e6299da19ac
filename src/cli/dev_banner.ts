import path from 'node:path';
import type { ClientConfig, TetherConfig } from '../config/schema.js';
import type { RunningListener } from '../http/listeners.js';
import type { DevPki } from '../keys/dev_pki.js';
import { curlTokenExample } from './token_example.js';

/**
 * What `tether dev` prints once it listens: the listeners actually bound, the endpoints, and every
 * client with how it authenticates — secrets included, because these are development credentials a
 * newcomer needs and the configuration already holds them in plain text.
 */
/** Where the banner points besides the token endpoint: metrics and the admin API's dev credential, when on. */
export interface BannerExtras {
  metricsUrl?: string;
  adminCredentialFile?: string;
  adminPath?: string;
}

export function devBanner(config: TetherConfig, listeners: readonly RunningListener[], pki: DevPki | undefined, extras: BannerExtras = {}, cwd = process.cwd()): string {
  const https = listeners.find((listener) => listener.kind === 'https');
  const http = listeners.find((listener) => listener.kind === 'http');
  const relative = (file: string) => path.relative(cwd, file) || file;
  const lines = [
    `Tether (development) — issuer ${config.issuer}`,
    ...listeners.map((listener) => `  ${listener.kind.padEnd(9)}  ${listener.origin}${listener.kind === 'https' ? '  (asks for client certificates)' : ''}`),
    ...issuerNote(config.issuer, listeners),
    `  discovery  ${config.issuer}/.well-known/oauth-authorization-server`,
    `  token      ${https?.origin ?? http?.origin}/token     jwks ${config.issuer}/jwks`,
    `  introspect ${https?.origin ?? http?.origin}/token/introspection  (the clients each resource lists as introspectors)`,
    `  health     ${(http ?? https)?.origin}/healthz  ${(http ?? https)?.origin}/readyz`,
    ...(extras.metricsUrl ? [`  metrics    ${extras.metricsUrl}  (Prometheus)`] : []),
    `  database   ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${relative(path.join(config.dataDir, 'db'))}`}`,
    ...(extras.adminCredentialFile
      ? [`  admin      ${(http ?? https)?.origin}${extras.adminPath ?? ''}/api  credential in ${relative(extras.adminCredentialFile)} (mode 0600; tether tokens|clients|ledger use it)`]
      : []),
  ];
  if (pki) lines.push(`  PKI        CA ${relative(pki.ca.certificatePath)}; client certificates in ${relative(path.join(pki.directory, 'clients'))}/`);

  lines.push('', 'Clients (development credentials: never reuse them elsewhere):');
  const width = Math.max(...config.clients.map((client) => client.id.length));
  for (const client of config.clients) {
    lines.push(`  ${client.id.padEnd(width)}  ${authenticationOf(client, pki, relative)}; ${bindingOf(client)}`);
    // The use-report resource is not an API the client calls: it is said as what it lets the client do.
    const reportsUse = config.useReports.resource !== undefined && config.useReports.resource in client.resources;
    const grants = [
      ...Object.entries(client.resources).filter(([uri]) => uri !== config.useReports.resource).map(([uri, scopes]) => `${uri} [${scopes.join(' ')}]`),
      ...Object.entries(client.exchange.targets).map(([uri, scopes]) => `by exchange ${uri} [${scopes.join(' ')}]${client.exchange.actFor.length ? ` for ${client.exchange.actFor.join(', ')}` : ''}`),
    ];
    const introspects = config.resources.filter((resource) => resource.introspectors.includes(client.id)).map((resource) => resource.uri);
    if (introspects.length) grants.push(`introspects ${introspects.join(', ')}`);
    if (reportsUse) grants.push(`reports use (${config.useReports.resource})`);
    if (grants.length) lines.push(`  ${''.padEnd(width)}  ${grants.join('; ')}`);
  }

  const mtlsClient = config.clients.find((client) => client.auth.method === 'tls_client_auth' && Object.keys(client.resources).length > 0);
  if (pki && https && mtlsClient) {
    const certificate = pki.clients[mtlsClient.id]!;
    lines.push(
      '',
      `A certificate-bound token for ${mtlsClient.id}:`,
      ...curlTokenExample(mtlsClient, {
        caFile: relative(pki.ca.certificatePath), certificateFile: relative(certificate.certificatePath), keyFile: relative(certificate.privateKeyPath),
      }, `${https.origin}/token`),
      '',
      'Token exchange and introspection with these clients, step by step: docs/development.md',
    );
  }
  return `${lines.join('\n')}\n`;
}

function authenticationOf(client: ClientConfig, pki: DevPki | undefined, relative: (file: string) => string): string {
  const { auth } = client;
  switch (auth.method) {
    case 'tls_client_auth': {
      if (auth.spiffeId !== undefined) return `tls_client_auth: an X.509-SVID of ${auth.spiffeId} (its trust domain's bundle)`;
      const issued = pki?.clients[client.id];
      return issued
        ? `tls_client_auth: --cert ${relative(issued.certificatePath)} --key ${relative(issued.privateKeyPath)}`
        : 'tls_client_auth: a certificate from the configured client CA';
    }
    case 'client_secret_basic':
      return `client_secret_basic: -u ${client.id}:${auth.secret}`;
    case 'client_secret_post':
      return `client_secret_post: -d client_secret=${auth.secret}`;
    case 'private_key_jwt':
      return `private_key_jwt: a client assertion signed with a key of its ${auth.jwksUri ? `jwksUri ${auth.jwksUri}` : 'configured jwks'}`;
    case 'self_signed_tls_client_auth':
      return 'self_signed_tls_client_auth: its self-signed certificate (configured jwks)';
    case 'federated':
      return `federated: a client_assertion issued to ${client.federatedIdentities.map((identity) => `${identity.subject} by ${identity.issuer}`).join(', ') || 'an identity of a trusted issuer'} (docs/federation.md)`;
  }
}

function bindingOf(client: ClientConfig): string {
  if (client.binding === 'mtls') return 'tokens bound to its certificate';
  if (client.binding === 'dpop') return 'DPoP-bound tokens: each request carries a DPoP proof (RFC 9449)';
  return 'bearer tokens';
}

/** When the issuer was set explicitly to a port nothing here listens on, say so: discovery points there. */
function issuerNote(issuer: string, listeners: readonly RunningListener[]): string[] {
  const wanted = new URL(issuer);
  const serves = listeners.some((listener) => {
    const origin = new URL(listener.origin);
    return origin.protocol === wanted.protocol && origin.port === wanted.port;
  });
  return serves ? [] : [`  note       the issuer was set explicitly (issuer or TETHER_ISSUER) and nothing here listens on ${wanted.host}: right behind a proxy; otherwise set issuer: auto`];
}

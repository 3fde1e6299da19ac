/**
 * The PKI of a deployment, made by `tether pki init` from its configuration, so that the two always
 * match: one CA that signs a server certificate for the issuer's host and one client certificate per
 * `tls_client_auth` client (RFC 8705 §2.1), kept in a private folder on the host; and, at the paths
 * the configuration's HTTPS listener names, the three files the server reads (its certificate, its
 * key, the client CA).
 *
 * The private folder is the development PKI's layout and logic (dev_pki.ts `ensureDevPki`): a run
 * reuses what is valid, issues what is missing, and reissues what expires within 30 days, so running
 * it again adds clients or renews certificates and keeps the CA.
 */
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { certificateClientIds, type ClientConfig, type TetherConfig } from '../config/schema.js';
import { certificateSubjectMatches } from '../provider/certificate_checks.js';
import { authenticationMetadataOf } from '../provider/client_metadata.js';
import { ensureDevPki, writeFileAtomically, type DevPki, type FileOwner, type PkiNames } from './dev_pki.js';

/** Options of {@link ensureDeploymentPki}. */
export interface DeploymentPkiOptions {
  /** A configuration as `loadConfigFile` returns it (file paths absolute). */
  readonly config: TetherConfig;
  /** The private folder: the CA's key and every client's key live here, never in the server's files. */
  readonly pkiDirectory: string;
  /** Host names or addresses the server certificate covers besides the issuer's host. */
  readonly extraHostnames?: readonly string[];
  /**
   * Owner of the installed server key. A bind mount keeps the host's owner and mode, and the key is
   * readable by its owner only, so the user a container runs as must own it.
   */
  readonly keyOwner?: FileOwner;
}

/** The files the server reads, by the configuration's names for them. */
export interface ServerFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string;
}

/** What {@link ensureDeploymentPki} made. */
export interface DeploymentPki {
  readonly pki: DevPki;
  readonly serverFiles: ServerFiles;
  readonly serverHostnames: readonly string[];
  /** Files of the private folder this call created or reissued (empty when everything was reused). */
  readonly created: readonly string[];
}

/** A configuration `tether pki init` cannot serve, or files it refuses to overwrite; `message` says which. */
export class DeploymentPkiError extends Error {
  override name = 'DeploymentPkiError';
}

// Certificates and the client CA are public; the key is for its owner only (RFC 8705 keeps nothing
// else secret on the server).
const PUBLIC_FILE_MODE = 0o644;
const PRIVATE_KEY_MODE = 0o600;
const PUBLIC_DIRECTORY_MODE = 0o755;

/**
 * Makes sure the private folder holds the deployment's PKI and installs the server's files at the
 * configured paths. Refuses (before writing anything at the server's paths) when the configuration
 * has no HTTPS listener files, when a registered client subject is not what the CA issues, or when a
 * certificate already at a server path was not issued by this PKI (someone else's certificate).
 */
export async function ensureDeploymentPki(options: DeploymentPkiOptions): Promise<DeploymentPki> {
  const { config } = options;
  const serverFiles = serverFilesOf(config);
  const serverHostnames = [...new Set([issuerHostname(config.issuer), ...(options.extraHostnames ?? [])])];
  const pki = await ensureDevPki({
    directory: options.pkiDirectory,
    clientNames: certificateClientIds(config.clients),
    serverHostnames,
    names: deploymentNames(serverHostnames[0]!),
  });
  assertClientSubjectsMatch(config.clients, pki);
  await assertOverwritable(serverFiles, pki);

  await installServerFiles(serverFiles, pki, options.keyOwner);
  return { pki, serverFiles, serverHostnames, created: pki.created };
}

function serverFilesOf(config: TetherConfig): ServerFiles {
  const https = config.listeners.https;
  const { certFile, keyFile, clientCaFile } = https ?? {};
  if (!certFile || !keyFile || !clientCaFile) {
    throw new DeploymentPkiError('listeners.https: certFile, keyFile and clientCaFile must name where the server reads its certificate, key and client CA');
  }
  return { certFile, keyFile, clientCaFile };
}

/** The host of the issuer URL, without the brackets of an IPv6 literal. */
function issuerHostname(issuer: string): string {
  return new URL(issuer).hostname.replace(/^\[(.*)\]$/, '$1');
}

function deploymentNames(primaryHostname: string): PkiNames {
  // The CN of a server certificate is informational (clients match the SAN, RFC 6125 §6.4.4).
  return { ca: 'Tether CA', server: /^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/.test(primaryHostname) ? primaryHostname : 'Tether server' };
}

/**
 * RFC 8705 §2.1.2: a client authenticates with the subject it registered. The configuration's value
 * must match the certificate this CA issued, checked exactly as the token endpoint checks it.
 */
function assertClientSubjectsMatch(clients: readonly ClientConfig[], pki: DevPki): void {
  const mismatches: string[] = [];
  clients.forEach((client, index) => {
    if (client.auth.method !== 'tls_client_auth') return;
    const issued = pki.clients[client.id]!;
    const certificate = new X509Certificate(issued.certificatePem);
    const [property, expected] = Object.entries(authenticationMetadataOf(client.auth)).find(([name, value]) => name.startsWith('tls_client_auth_') && typeof value === 'string')!;
    if (certificateSubjectMatches(certificate, property as Parameters<typeof certificateSubjectMatches>[1], expected as string)) return;
    const field = Object.keys(client.auth).find((name) => name !== 'method')!;
    mismatches.push(`clients[${index}].auth.${field} is ${JSON.stringify(expected)}, but the certificate issued to ${client.id} has subject ${JSON.stringify(certificate.subject.split('\n').join(','))}${certificate.subjectAltName ? ` and ${certificate.subjectAltName}` : ''}`);
  });
  if (mismatches.length > 0) {
    throw new DeploymentPkiError(`${mismatches.join('; ')} (tether pki issues CN=<client id>; use subjectDn: "CN=<client id>")`);
  }
}

/** Certificates at the server's paths are replaced only if this PKI issued them (or they are absent). */
async function assertOverwritable(files: ServerFiles, pki: DevPki): Promise<void> {
  const ca = new X509Certificate(pki.ca.certificatePem);
  const [certificatePem, clientCaPem] = await Promise.all([readIfPresent(files.certFile), readIfPresent(files.clientCaFile)]);
  if (certificatePem !== undefined && !issuedBy(certificatePem, ca)) {
    throw new DeploymentPkiError(`${files.certFile} holds a certificate that ${pki.ca.certificatePath} did not issue; tether pki leaves it alone (remove it to let tether pki manage it)`);
  }
  if (clientCaPem !== undefined && clientCaPem !== pki.ca.certificatePem) {
    throw new DeploymentPkiError(`${files.clientCaFile} is not the CA certificate ${pki.ca.certificatePath}; tether pki leaves it alone (remove it to let tether pki manage it)`);
  }
}

function issuedBy(certificatePem: string, ca: X509Certificate): boolean {
  try {
    const certificate = new X509Certificate(certificatePem);
    return certificate.checkIssued(ca) && certificate.verify(ca.publicKey);
  } catch {
    return false;
  }
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Writes the server's three files, key first (as dev_pki does). They are written on every run, so
 * mode and owner are set again too (an earlier run may have been without an owner).
 */
async function installServerFiles(files: ServerFiles, pki: DevPki, keyOwner: FileOwner | undefined): Promise<void> {
  const plan = [
    { file: files.keyFile, contents: pki.server.privateKeyPem, mode: PRIVATE_KEY_MODE, owner: keyOwner },
    { file: files.certFile, contents: pki.server.certificatePem, mode: PUBLIC_FILE_MODE, owner: undefined },
    { file: files.clientCaFile, contents: pki.ca.certificatePem, mode: PUBLIC_FILE_MODE, owner: undefined },
  ];
  for (const { file, contents, mode, owner } of plan) {
    await makeDirectoryFor(file);
    // Without an owner, a file keeps the one it has: a later run without --owner must not take the
    // key away from the container's user.
    await writeFileAtomically(file, contents, mode, owner ?? (await foreignOwnerOf(file)));
  }
}

/** The owner of an existing file when it is not the current user, else undefined. */
async function foreignOwnerOf(file: string): Promise<FileOwner | undefined> {
  try {
    const { uid, gid } = await stat(file);
    return uid === process.getuid?.() && gid === process.getgid?.() ? undefined : { uid, gid };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Creates a server file's folder, searchable by everyone: the container's user must reach the files in it. */
async function makeDirectoryFor(file: string): Promise<void> {
  const directory = path.dirname(file);
  const firstCreated = await mkdir(directory, { recursive: true });
  if (firstCreated === undefined) return;
  // mkdir's mode is reduced by the umask; chmod is not. Every folder this call created is opened.
  for (let current = directory; ; current = path.dirname(current)) {
    await chmod(current, PUBLIC_DIRECTORY_MODE);
    if (current === firstCreated || current === path.dirname(current)) break;
  }
}

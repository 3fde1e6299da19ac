/**
 * The development PKI: a private CA, a TLS server certificate and one client certificate per
 * development client, so that `tether dev` and the in-process test harness serve real mTLS and mint
 * real certificate-bound tokens (RFC 8705) without any setup.
 *
 * All keys are ECDSA P-256: generating them takes about a millisecond each, so a fresh PKI costs a few
 * tens of milliseconds and reusing one on disk costs only file reads.
 */
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import type { JsonWebKey as NodeJsonWebKey } from 'node:crypto';
import { chmod, chown, mkdir, readFile, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { thumbprintOf } from '../binding/certificate_thumbprint.js';
import type { Generated, Signer } from './pki_issuance.js';

/** The certificate generation (ASN.1 encoding), loaded only when something must be issued: a restart reads files. */
const issuance = () => import('./pki_issuance.js');

/** A certificate together with its private key, both PEM, and its RFC 8705 `x5t#S256` thumbprint. */
export interface CertificateAndKey {
  /** The certificate, PEM (`-----BEGIN CERTIFICATE-----`). */
  readonly certificatePem: string;
  /** The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
  readonly privateKeyPem: string;
  /** base64url(SHA-256(DER)) of the certificate (RFC 8705 §3.1). */
  readonly thumbprint: string;
}

/** The TLS server certificate and the host names and addresses it is valid for. */
export interface ServerCertificate extends CertificateAndKey {
  readonly hostnames: readonly string[];
}

/** A client certificate with subject `CN=<name>` and, when `<name>` is a host name, a `dNSName` SAN `<name>`. */
export interface ClientCertificate extends CertificateAndKey {
  readonly name: string;
}

/** A public JWK carrying its certificate (RFC 7517 §4.7 `x5c`, §4.9 `x5t#S256`). */
export interface PublicJwkWithCertificate extends NodeJsonWebKey {
  readonly kty: string;
  readonly x5c: readonly string[];
  readonly 'x5t#S256': string;
}

/** A client certificate from {@link issueClientCertificate}, with its public key as a JWK. */
export interface IssuedClientCertificate extends ClientCertificate {
  /** True when the certificate signs itself (for `self_signed_tls_client_auth`, RFC 8705 §2.2). */
  readonly selfSigned: boolean;
  /** The public key with `x5c` = [this certificate], ready for a client's registered `jwks`. */
  readonly jwk: PublicJwkWithCertificate;
}

/** An in-memory development PKI. */
export interface Pki {
  /** The CA; its certificate is what servers and clients trust. */
  readonly ca: CertificateAndKey;
  readonly server: ServerCertificate;
  /** Client certificates by name (a prototype-less object: only the names asked for are keys). */
  readonly clients: Readonly<Record<string, ClientCertificate>>;
}

/** Where a certificate and its key are stored. */
export interface PemFilePaths {
  readonly certificatePath: string;
  readonly privateKeyPath: string;
}

/** A development PKI stored in a directory, as returned by {@link ensureDevPki}. */
export interface DevPki extends Pki {
  readonly directory: string;
  readonly ca: CertificateAndKey & PemFilePaths;
  readonly server: ServerCertificate & PemFilePaths;
  readonly clients: Readonly<Record<string, ClientCertificate & PemFilePaths>>;
  /** Files written by this call (empty when everything was reused). */
  readonly created: readonly string[];
}

/** Options of {@link ensureDevPki}. */
export interface EnsureDevPkiOptions {
  /** Directory holding `ca.pem`, `server.pem`, `clients/<name>.pem` and their `.key.pem` keys. */
  directory: string;
  /** One client certificate per name (a client id: letters, digits, `. _ ~ -`, no leading dot, at most 64). */
  clientNames: readonly string[];
  /** DNS names and IP addresses of the server certificate. */
  serverHostnames?: readonly string[];
  /** Common names of newly issued CA and server certificates; default {@link DEV_PKI_NAMES}. */
  names?: PkiNames;
}

/** Common names that a PKI's CA and server certificates are issued with. */
export interface PkiNames {
  /** The CA's CN; a random suffix is added so that two CAs never share an issuer name. */
  readonly ca: string;
  readonly server: string;
}

/** Options of {@link createEphemeralPki}. */
export interface EphemeralPkiOptions {
  clientNames?: readonly string[];
  serverHostnames?: readonly string[];
}

/** Options of {@link issueClientCertificate}. */
export interface IssueClientCertificateOptions {
  /** Sign the certificate with its own key instead of the CA's. */
  selfSigned?: boolean;
  /** Defaults to an hour ago (tolerates clock skew between machines). */
  notBefore?: Date;
  /** Defaults to 397 days from now (pki_issuance.ts); a past date gives an expired certificate. */
  notAfter?: Date;
}

/** The names of the development PKI's certificates. */
export const DEV_PKI_NAMES: PkiNames = Object.freeze({ ca: 'Tether development CA', server: 'Tether development server' });

/** Server certificates cover these unless told otherwise. */
export const DEFAULT_SERVER_HOSTNAMES: readonly string[] = Object.freeze(['localhost', '127.0.0.1', '::1']);

// A stored certificate this close to expiry is reissued, so a running dev server never crosses it.
const RENEW_BEFORE_DAYS = 30;
const DAY_MS = 86_400_000;
// Client ids as the configuration allows them (letters, digits, . _ ~ -), limited to what is safe as
// a file name (no leading dot) and fits a CN (RFC 5280 ub-common-name: 64).
const CLIENT_NAME = /^(?!\.)[A-Za-z0-9._~-]{1,64}$/;
// A CN that needs no escaping in a distinguished name (RFC 4514 §2.4).
const PLAIN_COMMON_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;



// ---------------------------------------------------------------------------------------------------
// Public API

/**
 * Makes sure `directory` holds a development PKI and returns it.
 *
 * The first call creates the CA, the server certificate for `serverHostnames` and one client
 * certificate per name. Later calls only read the files; they create what is missing and reissue what
 * is unusable: a certificate that no longer chains to the stored CA, does not match its key, expires
 * within 30 days, or (for the server) does not cover all `serverHostnames`. A new CA reissues
 * everything. Private keys are written with mode 0600, atomically (temporary file + rename), under a
 * lock directory so that concurrent processes agree on one CA.
 *
 * @throws TypeError for a client name that is not a safe file name or an empty host name
 */
export async function ensureDevPki(options: EnsureDevPkiOptions): Promise<DevPki> {
  const request = normalizeRequest(options.clientNames, options.serverHostnames, options.names);
  const layout = layoutOf(options.directory, request.clientNames);
  const stored = await readStoredPki(layout, request, new Date());
  if (isComplete(stored, request)) return devPkiFrom(layout, request, stored, []);
  return withDirectoryLock(options.directory, async () => {
    // Another process may have repaired the directory while we waited for the lock.
    const current = await readStoredPki(layout, request, new Date());
    const created = await repairStoredPki(layout, request, current);
    return devPkiFrom(layout, request, current, created);
  });
}

/**
 * Creates a development PKI in memory only (for tests and the in-process harness): a CA, a server
 * certificate for `serverHostnames` and one client certificate per name. Takes a few milliseconds
 * per certificate.
 */
export async function createEphemeralPki(options: EphemeralPkiOptions = {}): Promise<Pki> {
  const request = normalizeRequest(options.clientNames ?? [], options.serverHostnames);
  const { generateCa, generateClient, generateServer } = await issuance();
  const ca = generateCa(request.names.ca);
  const server = generateServer(ca, request.serverHostnames, request.names.server);
  const clients = request.clientNames.map((name) => generateClient(ca, name, {}));
  return {
    ca: publicPart(ca),
    server: { ...publicPart(server), hostnames: request.serverHostnames },
    clients: recordOf(clients.map((client, index) => ({ ...publicPart(client), name: request.clientNames[index]! }))),
  };
}

/**
 * Issues one more client certificate (`CN=<name>`, SAN DNS `<name>` if a host name, clientAuth),
 * signed by the PKI's CA or, with `selfSigned`, by its own key (for `self_signed_tls_client_auth`,
 * RFC 8705 §2.2). Nothing is written to disk. `notBefore`/`notAfter` allow not-yet-valid or expired
 * certificates for negative tests.
 *
 * @throws TypeError for a name that is not letters, digits and `. _ ~ -` (no leading dot, at most 64)
 */
export async function issueClientCertificate(
  pki: Pki,
  name: string,
  options: IssueClientCertificateOptions = {},
): Promise<IssuedClientCertificate> {
  assertClientName(name);
  const selfSigned = options.selfSigned === true;
  const { generateClient, generateSelfSignedClient, signerFromPem } = await issuance();
  const issued = selfSigned ? generateSelfSignedClient(name, options) : generateClient(signerFromPem(pki.ca), name, options);
  return { ...publicPart(issued), name, selfSigned, jwk: publicJwkOf(issued.der) };
}

// ---------------------------------------------------------------------------------------------------
// Requests and layout

interface NormalizedRequest {
  readonly clientNames: readonly string[];
  readonly serverHostnames: readonly string[];
  readonly names: PkiNames;
}

function normalizeRequest(clientNames: readonly string[], serverHostnames: readonly string[] | undefined, names = DEV_PKI_NAMES): NormalizedRequest {
  clientNames.forEach(assertClientName);
  const hostnames = serverHostnames ?? DEFAULT_SERVER_HOSTNAMES;
  if (hostnames.length === 0) throw new TypeError('serverHostnames must name at least one host');
  hostnames.forEach(assertHostname);
  [names.ca, names.server].forEach(assertCommonName);
  return { clientNames: [...new Set(clientNames)], serverHostnames: [...new Set(hostnames)], names };
}

function assertCommonName(name: string): void {
  if (typeof name !== 'string' || !PLAIN_COMMON_NAME.test(name)) {
    throw new TypeError(`certificate name ${JSON.stringify(name)} must match ${PLAIN_COMMON_NAME.source}`);
  }
}

function assertClientName(name: string): void {
  // The name becomes a file name and a certificate CN: no path separators, no DN syntax.
  if (typeof name !== 'string' || !CLIENT_NAME.test(name)) {
    throw new TypeError(`client name ${JSON.stringify(name)} must match ${CLIENT_NAME.source}`);
  }
}

function assertHostname(hostname: string): void {
  if (typeof hostname !== 'string' || hostname.length === 0 || /[\s,/]/.test(hostname)) {
    throw new TypeError(`server hostname ${JSON.stringify(hostname)} is not a host name or IP address`);
  }
}

interface PkiLayout {
  readonly directory: string;
  readonly ca: PemFilePaths;
  readonly server: PemFilePaths;
  readonly clients: ReadonlyMap<string, PemFilePaths>;
}

function layoutOf(directory: string, clientNames: readonly string[]): PkiLayout {
  const pair = (base: string): PemFilePaths => ({ certificatePath: `${base}.pem`, privateKeyPath: `${base}.key.pem` });
  return {
    directory,
    ca: pair(join(directory, 'ca')),
    server: pair(join(directory, 'server')),
    clients: new Map(clientNames.map((name) => [name, pair(join(directory, 'clients', name))])),
  };
}

// ---------------------------------------------------------------------------------------------------
// Reading and checking a stored PKI (the fast path: file reads and a few signature checks)

interface StoredPair {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly certificate: X509Certificate;
}

interface StoredPki {
  ca: StoredPair | undefined;
  server: StoredPair | undefined;
  clients: Map<string, StoredPair | undefined>;
}

async function readStoredPki(layout: PkiLayout, request: NormalizedRequest, now: Date): Promise<StoredPki> {
  const [ca, server, ...clients] = await Promise.all([
    readPair(layout.ca),
    readPair(layout.server),
    ...request.clientNames.map((name) => readPair(layout.clients.get(name)!)),
  ]);
  const usableCa = ca && isUsableCa(ca, now) ? ca : undefined;
  const usableLeaf = (pair: StoredPair | undefined, check: (certificate: X509Certificate) => boolean) =>
    pair && usableCa && isUsableLeaf(pair, usableCa, now) && check(pair.certificate) ? pair : undefined;
  return {
    ca: usableCa,
    server: usableLeaf(server, (certificate) => coversHostnames(certificate, request.serverHostnames)),
    clients: new Map(
      request.clientNames.map((name, index) => [name, usableLeaf(clients[index], (certificate) => hasCommonName(certificate, name))]),
    ),
  };
}

async function readPair(paths: PemFilePaths): Promise<StoredPair | undefined> {
  const [certificatePem, privateKeyPem] = await Promise.all([readOptional(paths.certificatePath), readOptional(paths.privateKeyPath)]);
  if (certificatePem === undefined || privateKeyPem === undefined) return undefined;
  try {
    const certificate = new X509Certificate(certificatePem);
    // A crash between writing a key and its certificate leaves a mismatched pair: treat it as missing.
    if (!certificate.checkPrivateKey(createPrivateKey(privateKeyPem))) return undefined;
    return { certificatePem, privateKeyPem, certificate };
  } catch {
    return undefined;
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function isUsableCa(pair: StoredPair, now: Date): boolean {
  const { certificate } = pair;
  return (
    certificate.ca &&
    certificate.checkIssued(certificate) &&
    // Issuing with it later imports its key as ECDSA P-256.
    certificate.publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1' &&
    isValidLongEnough(certificate, now)
  );
}

function isUsableLeaf(pair: StoredPair, ca: StoredPair, now: Date): boolean {
  const { certificate } = pair;
  return (
    !certificate.ca &&
    certificate.checkIssued(ca.certificate) &&
    certificate.verify(ca.certificate.publicKey) &&
    isValidLongEnough(certificate, now)
  );
}

function isValidLongEnough(certificate: X509Certificate, now: Date): boolean {
  const time = now.getTime();
  return certificate.validFromDate.getTime() <= time && certificate.validToDate.getTime() - time > RENEW_BEFORE_DAYS * DAY_MS;
}

function coversHostnames(certificate: X509Certificate, hostnames: readonly string[]): boolean {
  const dnsNames = (certificate.subjectAltName ?? '').split(', ').map((entry) => entry.toLowerCase());
  return hostnames.every((hostname) => {
    if (isIP(hostname)) return certificate.checkIP(hostname) !== undefined;
    // checkHost() matches a name against a wildcard, not a wildcard against the certificate.
    if (hostname.includes('*')) return dnsNames.includes(`dns:${hostname.toLowerCase()}`);
    return certificate.checkHost(hostname, { wildcards: false }) !== undefined;
  });
}

function hasCommonName(certificate: X509Certificate, name: string): boolean {
  return certificate.subject === `CN=${name}`;
}

function isComplete(stored: StoredPki, request: NormalizedRequest): boolean {
  return stored.ca !== undefined && stored.server !== undefined && request.clientNames.every((name) => stored.clients.get(name));
}

// ---------------------------------------------------------------------------------------------------
// Repairing a stored PKI (the slow path, under the directory lock)

async function repairStoredPki(layout: PkiLayout, request: NormalizedRequest, stored: StoredPki): Promise<string[]> {
  if (isComplete(stored, request)) return [];
  const { generateCa, generateClient, generateServer, signerFromPem } = await issuance();
  await mkdir(join(layout.directory, 'clients'), { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const save = async (paths: PemFilePaths, generated: Generated): Promise<StoredPair> => {
    // Key first: a crash before the certificate is written leaves a mismatch that the next run repairs.
    await writeFileAtomically(paths.privateKeyPath, generated.privateKeyPem, 0o600);
    await writeFileAtomically(paths.certificatePath, generated.certificatePem, 0o644);
    written.push(paths.privateKeyPath, paths.certificatePath);
    return { certificatePem: generated.certificatePem, privateKeyPem: generated.privateKeyPem, certificate: new X509Certificate(generated.der) };
  };

  let signer: Signer;
  if (stored.ca) {
    signer = signerFromPem(stored.ca);
  } else {
    const ca = generateCa(request.names.ca);
    stored.ca = await save(layout.ca, ca);
    signer = ca;
    // Certificates of a replaced CA no longer chain: reissue all of them.
    stored.server = undefined;
    for (const name of stored.clients.keys()) stored.clients.set(name, undefined);
  }

  const jobs: Promise<void>[] = [];
  if (!stored.server) {
    jobs.push(save(layout.server, generateServer(signer, request.serverHostnames, request.names.server)).then((server) => void (stored.server = server)));
  }
  for (const name of request.clientNames) {
    if (stored.clients.get(name)) continue;
    jobs.push(save(layout.clients.get(name)!, generateClient(signer, name, {})).then((client) => void stored.clients.set(name, client)));
  }
  await Promise.all(jobs);
  return written;
}

/** Who a written file belongs to (numeric ids: the user may exist only inside a container). */
export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Writes `contents` to `path` through a temporary file and a rename, so readers see the old file or
 * the new one, never a partial one. The file gets exactly `mode` (whatever the umask) and, when given,
 * `owner`, both before it appears under its name.
 */
export async function writeFileAtomically(path: string, contents: string, mode: number, owner?: FileOwner): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, contents, { mode: 0o600, flag: 'wx' });
    await chmod(temporary, mode);
    if (owner) await chown(temporary, owner.uid, owner.gid);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 60_000;
const LOCK_POLL_MS = 20;

/** Runs `action` while holding `<directory>/.lock` (a directory: mkdir is atomic on every platform). */
async function withDirectoryLock<T>(directory: string, action: () => Promise<T>): Promise<T> {
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const lock = join(directory, '.lock');
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (await isStaleLock(lock)) {
        await rmdir(lock).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the development PKI lock ${lock}`);
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
  }
  try {
    return await action();
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}

async function isStaleLock(lock: string): Promise<boolean> {
  try {
    // A process killed while holding the lock leaves it behind; generation takes well under a second.
    return Date.now() - (await stat(lock)).mtimeMs > LOCK_STALE_MS;
  } catch {
    return false;
  }
}

function devPkiFrom(layout: PkiLayout, request: NormalizedRequest, stored: StoredPki, created: readonly string[]): DevPki {
  const entry = (pair: StoredPair | undefined, paths: PemFilePaths) => {
    if (!pair) throw new Error(`development PKI in ${layout.directory} is incomplete`);
    return { certificatePem: pair.certificatePem, privateKeyPem: pair.privateKeyPem, thumbprint: thumbprintOf(pair.certificate.raw), ...paths };
  };
  return {
    directory: layout.directory,
    ca: entry(stored.ca, layout.ca),
    server: { ...entry(stored.server, layout.server), hostnames: request.serverHostnames },
    clients: recordOf(request.clientNames.map((name) => ({ ...entry(stored.clients.get(name), layout.clients.get(name)!), name }))),
    created,
  };
}

function recordOf<T extends { name: string }>(items: readonly T[]): Record<string, T> {
  // Prototype-less, so that a lookup of a name nobody asked for ("constructor") is undefined.
  const record = Object.create(null) as Record<string, T>;
  for (const item of items) record[item.name] = item;
  return record;
}

function publicPart(generated: Generated): CertificateAndKey {
  return { certificatePem: generated.certificatePem, privateKeyPem: generated.privateKeyPem, thumbprint: thumbprintOf(generated.der) };
}

function publicJwkOf(der: Buffer): PublicJwkWithCertificate {
  const jwk = new X509Certificate(der).publicKey.export({ format: 'jwk' });
  return { ...jwk, kty: jwk.kty ?? 'EC', x5c: [der.toString('base64')], 'x5t#S256': thumbprintOf(der) };
}


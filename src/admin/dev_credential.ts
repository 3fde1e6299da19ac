import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The local credential of `tether dev`: a random bearer secret for the admin API, written with the
 * address of the running server to `<dataDir>/admin-credential.json` (mode 0600), so that the CLI on
 * the same machine, as the same user, can reach the server that holds the embedded database. A new
 * secret is generated at every start; the file is removed at stop.
 */

export const DEV_CREDENTIAL_FILE = 'admin-credential.json';

export interface DevCredential {
  /** The bearer secret (`Authorization: Bearer <secret>`). */
  secret: string;
  /** Where the admin API is served, e.g. `http://127.0.0.1:8080/admin`. */
  url: string;
  /** CA bundle file of an https `url` (the development PKI's CA). */
  caFile?: string;
  /** The server's process id. */
  pid: number;
}

export function newDevSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function devCredentialPath(dataDir: string): string {
  return path.join(dataDir, DEV_CREDENTIAL_FILE);
}

/** Writes the credential file readable by its owner only (also when it already existed with a wider mode). */
export async function writeDevCredential(dataDir: string, credential: DevCredential): Promise<string> {
  const file = devCredentialPath(dataDir);
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, `${JSON.stringify(credential, null, 2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

export async function removeDevCredential(dataDir: string): Promise<void> {
  await rm(devCredentialPath(dataDir), { force: true });
}

/** The credential file of a running `tether dev`, or undefined when there is none (or it is not one). */
export async function readDevCredential(dataDir: string): Promise<DevCredential | undefined> {
  let text: string;
  try {
    text = await readFile(devCredentialPath(dataDir), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<DevCredential>;
    if (typeof value.secret !== 'string' || typeof value.url !== 'string' || typeof value.pid !== 'number') return undefined;
    return { secret: value.secret, url: value.url, pid: value.pid, ...(typeof value.caFile === 'string' ? { caFile: value.caFile } : {}) };
  } catch {
    return undefined;
  }
}

/** Compares a presented secret with the credential in constant time (over digests: lengths may differ). */
export function isDevSecret(presented: string, secret: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(presented), digest(secret));
}

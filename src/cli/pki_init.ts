import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { loadConfigFile } from '../config/load_config.js';
import type { FileOwner } from '../keys/dev_pki.js';
import { DeploymentPkiError, ensureDeploymentPki, type DeploymentPki } from '../keys/deployment_pki.js';
import { writeJsonTo } from './command_conventions.js';
import { PKI_EXIT, type PkiInitOptions } from './pki_command.js';
import { curlTokenExample } from './token_example.js';

/** `tether pki init` (pki_command.ts registers it): makes, completes or renews the files and says what they are. */
export async function pkiInit(options: PkiInitOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<void> {
  let keyOwner: FileOwner | undefined;
  try {
    keyOwner = options.owner === undefined ? undefined : parseOwner(options.owner);
    const config = await loadConfigFile(options.config);
    const pkiDirectory = path.resolve(options.pkiDir ?? path.join(path.dirname(options.config), 'pki'));
    const made = await ensureDeploymentPki({ config, pkiDirectory, extraHostnames: options.host, keyOwner });
    const certificateClients = config.clients.filter((client) => client.auth.method === 'tls_client_auth');
    if (options.json) writeJsonTo(out, pkiJson(made, config.issuer, certificateClients));
    else out.write(`${describe(made, config.issuer, keyOwner, certificateClients)}\n`);
    // The configuration is mounted next to the key and must be readable by the same user.
    if (keyOwner && !readableBy(await stat(options.config), keyOwner)) {
      err.write(`tether: pki init: warning: ${options.config} is not readable by ${keyOwner.uid}:${keyOwner.gid}; a container running as that user cannot read it (chmod a+r ${options.config})\n`);
    }
  } catch (error) {
    if (!(error instanceof DeploymentPkiError) && !isPermissionError(error)) throw error;
    err.write(`tether: pki init: ${permissionHint(error as Error, keyOwner)}\n`);
    process.exitCode = PKI_EXIT.refused;
  }
}

function parseOwner(value: string): FileOwner {
  const match = /^(\d+)(?::(\d+))?$/.exec(value);
  if (!match) throw new DeploymentPkiError(`--owner: expected a numeric uid or uid:gid (got ${JSON.stringify(value)})`);
  const uid = Number(match[1]);
  return { uid, gid: match[2] === undefined ? uid : Number(match[2]) };
}

function readableBy(file: Stats, owner: FileOwner): boolean {
  if (file.uid === owner.uid) return (file.mode & 0o400) !== 0;
  if (file.gid === owner.gid) return (file.mode & 0o040) !== 0;
  return (file.mode & 0o004) !== 0;
}

function isPermissionError(error: unknown): boolean {
  return ['EPERM', 'EACCES'].includes((error as NodeJS.ErrnoException)?.code ?? '');
}

function permissionHint(error: Error, owner: FileOwner | undefined): string {
  const { code, syscall, path: file } = error as NodeJS.ErrnoException;
  if (code === undefined) return error.message;
  if (syscall === 'chown') {
    const to = owner ? `${owner.uid}:${owner.gid}` : 'the owner it had';
    return `cannot give the server key to ${to} (${code}): only root (sudo) can give a file to another user`;
  }
  return `${syscall ?? 'access'} ${file ?? ''}: ${code}`;
}

function pkiJson(made: DeploymentPki, issuer: string, certificateClients: { id: string }[]): Record<string, unknown> {
  return {
    issuer,
    pki_dir: made.pki.directory,
    server_hostnames: made.serverHostnames,
    issued: made.created.filter((file) => !file.endsWith('.key.pem')),
    server_files: { cert_file: made.serverFiles.certFile, key_file: made.serverFiles.keyFile, client_ca_file: made.serverFiles.clientCaFile },
    clients: certificateClients.map((client) => ({
      client_id: client.id, certificate_file: made.pki.clients[client.id]!.certificatePath, key_file: made.pki.clients[client.id]!.privateKeyPath,
    })),
  };
}

function describe(made: DeploymentPki, issuer: string, owner: FileOwner | undefined, certificateClients: Parameters<typeof curlTokenExample>[0][]): string {
  const relative = (file: string) => {
    const fromHere = path.relative(process.cwd(), file);
    return fromHere === '' || fromHere.startsWith('..') ? file : fromHere;
  };
  const { pki, serverFiles } = made;
  const lines = [
    `PKI for ${issuer} (server certificate for ${made.serverHostnames.join(', ')}) in ${relative(pki.directory)}/`,
    `  ${made.created.length === 0 ? 'nothing to issue: every certificate is valid for more than 30 days' : `issued ${made.created.filter((file) => !file.endsWith('.key.pem')).map(relative).join(', ')}`}`,
    `  keep ${relative(pki.directory)}/ on this host: it holds the CA's key and the clients' keys; the server needs none of them`,
    '',
    'The server reads (mount these, read-only):',
    `  ${relative(serverFiles.certFile)}  server certificate`,
    `  ${relative(serverFiles.keyFile)}  server key, mode 600${owner ? `, owner ${owner.uid}:${owner.gid}` : ' (owned by you: pass --owner for a container\'s user)'}`,
    `  ${relative(serverFiles.clientCaFile)}  client CA (clients also trust the server with it)`,
  ];
  if (certificateClients.length > 0) {
    lines.push('', 'Client certificates (hand each to its client):');
    for (const client of certificateClients) {
      const issued = pki.clients[client.id]!;
      lines.push(`  ${client.id}  ${relative(issued.certificatePath)}  ${relative(issued.privateKeyPath)}`);
    }
    const first = certificateClients[0]!;
    const issued = pki.clients[first.id]!;
    lines.push('', `A certificate-bound token for ${first.id}, once the server runs:`, ...curlTokenExample(first, {
      caFile: relative(serverFiles.clientCaFile), certificateFile: relative(issued.certificatePath), keyFile: relative(issued.privateKeyPath),
    }, `${issuer}/token`));
  }
  return lines.join('\n');
}

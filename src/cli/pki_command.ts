import type { Command } from 'commander';
import { jsonOption } from './command_conventions.js';

/** Exit codes: done / the configuration or the files on disk do not allow it. */
export const PKI_EXIT = { done: 0, refused: 2 } as const;

export interface PkiInitOptions {
  config: string;
  pkiDir?: string;
  host: string[];
  owner?: string;
  json?: boolean;
}

/**
 * `tether pki init --config FILE`: the production PKI for a configuration (keys/deployment_pki.ts).
 * The configuration decides everything: the server certificate is for the issuer's host, the
 * client certificates are for its `tls_client_auth` clients, and the server's files go where its
 * HTTPS listener reads them.
 */
export function registerPkiCommands(program: Command, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): void {
  const pki = program.command('pki').description('certificates for a deployment: a CA, the server certificate, client certificates');

  pki.command('init')
    .description('make (or complete and renew) the PKI a configuration needs; run again to add clients or renew, the CA is kept')
    .requiredOption('-c, --config <file>', 'configuration file: issuer host, tls_client_auth clients, listeners.https files')
    .option('--pki-dir <dir>', 'private folder for the CA, the server\'s and the clients\' keys (default: pki/ next to the configuration)')
    .option('--host <name>', 'another DNS name or IP address for the server certificate (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--owner <uid[:gid]>', 'give the installed server key to this numeric user (a container\'s user, e.g. 1000:1000 for the image\'s node user)')
    .addOption(jsonOption())
    .action(async (options: PkiInitOptions) => (await import('./pki_init.js')).pkiInit(options, out, err));
}

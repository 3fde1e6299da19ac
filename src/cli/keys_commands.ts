import type { Command } from 'commander';
import type { Knex } from 'knex';
import type { TetherConfig } from '../config/schema.js';
import type { RemoteRequest } from './admin_remote.js';
import { configOption, jsonOption, takesIds } from './command_conventions.js';

/** Opens the database a command works on and hands it, with the configuration, to `work`. */
export type WithDatabase = <T>(configFile: string | undefined, work: (knex: Knex, config: TetherConfig) => Promise<T>) => Promise<T>;

/** What a keys command works with: the database, the configuration, where it prints. */
export interface KeysContext {
  knex: Knex;
  config: TetherConfig;
  out: NodeJS.WritableStream;
}

/**
 * Runs a keys command: on the configured database, or — when a running `tether dev` holds it — as
 * `remote` through that server's admin API, which runs the same function (admin/operations.ts).
 */
export type KeysRunner = (configFile: string | undefined, work: (context: KeysContext) => Promise<void>, remote: RemoteRequest) => Promise<void>;

/** A runner on the database only (`withDatabase`), for callers without a running server to ask. */
export function databaseKeysRunner(withDatabase: WithDatabase, out: NodeJS.WritableStream): KeysRunner {
  return (configFile, work) => withDatabase(configFile, (knex, config) => work({ knex, config, out }));
}

/** What the keys commands do (keys_actions.ts), loaded when one runs. */
const keysActions = () => import('./keys_actions.js');

/**
 * `tether keys list|rotate|retire`: signing keys live in the database, shared by every instance;
 * running instances learn of every change within seconds (LISTEN/NOTIFY), without a restart.
 */
export function registerKeysCommands(program: Command, run: KeysRunner): void {
  const keys = program.command('keys').description('signing keys (kept in the database, shared by all instances)');

  keys.command('list')
    .description('list signing keys and their state: staged, active, superseded, retiring, retired')
    .addOption(configOption())
    .addOption(jsonOption())
    .action((options: { config?: string; json?: boolean }) => run(options.config, async (context) => (await keysActions()).keysList(context, options), {
      method: 'GET', path: '/keys', input: {}, json: options.json,
    }));

  keys.command('rotate')
    .description('stage a new signing key: published now, signing after signing.publicationDelay; the key it replaces retires then')
    .addOption(configOption())
    .option('--immediately', 'sign with the new key at once (a compromised key): verifiers that cached the JWKS must refetch it')
    .addOption(jsonOption())
    .action((options: { config?: string; immediately?: boolean; json?: boolean }) => run(options.config, async (context) => (await keysActions()).keysRotate(context, options), {
      method: 'POST', path: '/keys/rotate', input: { immediately: options.immediately }, json: options.json,
    }));

  // A kid is a base64url thumbprint and may begin with "-": not an option (command_conventions.ts).
  takesIds(keys.command('retire <kid>'))
    .description('stop signing with a key at once; it stays published until the tokens it signed have expired')
    .addOption(configOption())
    .option('--force', 'also retire the key that signs now, or the last key of its algorithm')
    .option('--withdraw-now', 'also remove it from the JWKS at once (a compromised key): tokens it signed stop verifying')
    .addOption(jsonOption())
    .action((kid: string, options: { config?: string; force?: boolean; withdrawNow?: boolean; json?: boolean }) => run(options.config, async (context) => (await keysActions()).keysRetire(context, kid, options), {
      method: 'POST', path: `/keys/${encodeURIComponent(kid)}/retire`, input: { force: options.force, withdraw_now: options.withdrawNow }, json: options.json,
    }));
}

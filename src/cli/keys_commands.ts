import type { Command } from 'commander';
import type { Knex } from 'knex';
import type { TetherConfig } from '../config/schema.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey, type SigningKeyInfo } from '../keys/signing_keys.js';
import { renderTable } from './table.js';

/** Opens the database a command works on and hands it, with the configuration, to `work`. */
export type WithDatabase = <T>(configFile: string | undefined, work: (knex: Knex, config: TetherConfig) => Promise<T>) => Promise<T>;

function keyTable(keys: SigningKeyInfo[]): string {
  const rows = keys.map((key) => [key.kid, key.alg, key.current ? 'current' : key.retiredAt ? 'retired' : 'published', key.activatedAt.toISOString(), key.retiredAt?.toISOString() ?? '']);
  return renderTable(['KID', 'ALG', 'STATE', 'ACTIVATED', 'RETIRED'], rows);
}

/**
 * `tether keys list|rotate|retire`: signing keys live in the database, shared by every instance.
 * A rotated key signs from the next start of each instance; the previous one stays published until retired.
 */
export function registerKeysCommands(program: Command, withDatabase: WithDatabase, out: NodeJS.WritableStream = process.stdout): void {
  const keys = program.command('keys').description('signing keys (kept in the database, shared by all instances)');

  keys.command('list')
    .description('list signing keys and their state')
    .option('-c, --config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (options: { config?: string; json?: boolean }) => {
      const list = await withDatabase(options.config, (knex) => listSigningKeys(knex));
      out.write(options.json ? `${JSON.stringify(list, null, 2)}\n` : `${keyTable(list)}\n`);
    });

  keys.command('rotate')
    .description('create a new current signing key; the old ones stay published until retired')
    .option('-c, --config <file>', 'configuration file')
    .action(async (options: { config?: string }) => {
      const { kid } = await withDatabase(options.config, (knex, config) => rotateSigningKey(knex, {
        algorithm: config.signing.algorithm, encryptionSecret: config.signing.encryptionSecret,
      }));
      out.write(`new signing key ${kid}; instances sign with it after their next start\n`);
    });

  keys.command('retire <kid>')
    .description('stop signing with and publishing a key (after its tokens have expired)')
    .option('-c, --config <file>', 'configuration file')
    .action(async (kid: string, options: { config?: string }) => {
      const { retired } = await withDatabase(options.config, (knex) => retireSigningKey(knex, kid));
      if (!retired) {
        process.exitCode = 1;
        out.write(`no published key ${kid}\n`);
        return;
      }
      out.write(`retired ${kid}\n`);
    });
}

import type { Command } from 'commander';
import type { Knex } from 'knex';
import { ConfigError } from '../config/load_config.js';
import type { TetherConfig } from '../config/schema.js';
import { KeyEncryptionError } from '../keys/key_encryption.js';
import { signingPolicyOf } from '../keys/signing_policy.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey, type RetireOutcome, type SigningKeyInfo } from '../keys/signing_keys.js';
import { renderTable } from '../text/table.js';

/** Opens the database a command works on and hands it, with the configuration, to `work`. */
export type WithDatabase = <T>(configFile: string | undefined, work: (knex: Knex, config: TetherConfig) => Promise<T>) => Promise<T>;

function keyTable(keys: SigningKeyInfo[]): string {
  const time = (value: Date | null) => value?.toISOString() ?? '';
  const rows = keys.map((key) => [key.kid, key.alg, key.state, time(key.activatedAt), time(key.retiredAt), time(key.publishedUntil)]);
  return renderTable(['KID', 'ALG', 'STATE', 'SIGNS FROM', 'STOPS SIGNING', 'PUBLISHED UNTIL'], rows);
}

/** A key that cannot be written with the configured secret is a configuration problem: one line, exit 2. */
async function withKeyErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof KeyEncryptionError) throw new ConfigError(`signing keys: ${error.message}`);
    throw error;
  }
}

/**
 * `tether keys list|rotate|retire`: signing keys live in the database, shared by every instance;
 * running instances learn of every change within seconds (LISTEN/NOTIFY), without a restart.
 */
export function registerKeysCommands(program: Command, withDatabase: WithDatabase, out: NodeJS.WritableStream = process.stdout): void {
  const keys = program.command('keys').description('signing keys (kept in the database, shared by all instances)');

  keys.command('list')
    .description('list signing keys and their state: staged, active, superseded, retiring, retired')
    .option('-c, --config <file>', 'configuration file')
    .option('--json', 'machine-readable output')
    .action(async (options: { config?: string; json?: boolean }) => {
      const list = await withDatabase(options.config, (knex) => listSigningKeys(knex));
      out.write(options.json ? `${JSON.stringify(list, null, 2)}\n` : `${keyTable(list)}\n`);
    });

  keys.command('rotate')
    .description('stage a new signing key: published now, signing after signing.publicationDelay; the key it replaces retires then')
    .option('-c, --config <file>', 'configuration file')
    .option('--immediately', 'sign with the new key at once (a compromised key): verifiers that cached the JWKS must refetch it')
    .action(async (options: { config?: string; immediately?: boolean }) => {
      const { rotated, policy } = await withDatabase(options.config, (knex, config) => withKeyErrors(async () => {
        const policy = signingPolicyOf(config);
        const timing = { ...policy, publicationDelaySeconds: options.immediately ? 0 : policy.publicationDelaySeconds };
        return { rotated: await rotateSigningKey(knex, { ...timing, algorithm: policy.algorithm, encryptionSecret: policy.encryptionSecret }), policy };
      }));
      const lines = [
        options.immediately
          ? `new ${policy.algorithm} signing key ${rotated.kid} signs now (no publication delay: verifiers that cached the JWKS without it refetch it on the unknown kid, or refuse its tokens until their cache expires)`
          : `new ${policy.algorithm} signing key ${rotated.kid} is published now and signs from ${rotated.activatesAt.toISOString()} (after the publication delay of ${policy.publicationDelaySeconds} s)`,
        ...rotated.replaced.map((kid) => `${kid} signs until then, and stays published for ${policy.retirementTailSeconds} s more (the longest token lifetime + leeway)`),
        'running instances pick this up within seconds; no restart needed',
      ];
      out.write(`${lines.join('\n')}\n`);
    });

  keys.command('retire <kid>')
    .description('stop signing with a key at once; it stays published until the tokens it signed have expired')
    .option('-c, --config <file>', 'configuration file')
    .option('--force', 'also retire the key that signs now, or the last key of its algorithm')
    .option('--withdraw-now', 'also remove it from the JWKS at once (a compromised key): tokens it signed stop verifying')
    // A kid is a base64url thumbprint and may begin with "-": not an option. A mistyped option is
    // still refused, as an excess argument.
    .allowUnknownOption()
    .allowExcessArguments(false)
    .action(async (kid: string, options: { config?: string; force?: boolean; withdrawNow?: boolean }) => {
      const { outcome, tailSeconds } = await withDatabase(options.config, async (knex, config) => {
        const policy = signingPolicyOf(config);
        const result = await retireSigningKey(knex, kid, {
          retirementTailSeconds: policy.retirementTailSeconds,
          configuredAlgorithm: policy.algorithm,
          force: options.force,
          withdrawNow: options.withdrawNow,
        });
        return { outcome: result, tailSeconds: policy.retirementTailSeconds };
      });
      const { text, exitCode } = describeRetirement(outcome, tailSeconds);
      if (exitCode !== 0) process.exitCode = exitCode;
      out.write(`${text}\n`);
    });
}

function describeRetirement(result: RetireOutcome, tailSeconds: number): { text: string; exitCode: number } {
  switch (result.outcome) {
    case 'unknown':
      return { text: `no signing key ${result.kid}`, exitCode: 1 };
    case 'already-retired':
      return { text: `${result.kid} is already retired`, exitCode: 0 };
    case 'retired': {
      const lines = [
        `retired ${result.kid}: it no longer signs; it is published until ${result.publishedUntil.toISOString()}`,
      ];
      if (result.wasActive) {
        lines.push(result.promoted
          ? `${result.promoted} (staged) signs from now`
          : `instances signing ${result.alg} create a new key as soon as they learn of this (within seconds)`);
      }
      return { text: lines.join('\n'), exitCode: 0 };
    }
    case 'refused': {
      const { refusal, kid } = result;
      if (refusal.reason === 'current') {
        const successor = refusal.successor
          ? `${refusal.successor.kid} is staged and signs from ${refusal.successor.activatedAt.toISOString()}; ${kid} retires by itself then.`
          : `Run "tether keys rotate": its new key signs after the publication delay and ${kid} retires by itself then, staying published ${tailSeconds} s for the tokens it signed.`;
        return {
          text: `refusing to retire ${kid}: it is the key that signs ${refusal.alg} tokens now. ${successor} ` +
            'To stop signing with it at once (a compromised key), add --force: a staged key, or a new one, signs immediately, before every verifier may have fetched it.',
          exitCode: 1,
        };
      }
      return {
        text: `refusing to retire ${kid}: it is the last ${refusal.alg} key; instances configured with signing.algorithm ${refusal.alg} would have none to sign with. ` +
          `If no instance signs ${refusal.alg} any more, add --force (it stays published ${tailSeconds} s for the tokens it signed).`,
        exitCode: 1,
      };
    }
  }
}

import type { Command } from 'commander';
import type { Knex } from 'knex';
import { ConfigError } from '../config/load_config.js';
import type { TetherConfig } from '../config/schema.js';
import { KeyEncryptionError } from '../keys/key_encryption.js';
import { signingPolicyOf } from '../keys/signing_policy.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey, type RetireOutcome, type SigningKeyInfo } from '../keys/signing_keys.js';
import type { RemoteRequest } from './admin_remote.js';
import { CommandError } from './cli_errors.js';
import { configOption, jsonOption, notFoundHint, takesIds, writeJsonTo } from './command_conventions.js';
import { renderTable } from '../text/table.js';

/** Opens the database a command works on and hands it, with the configuration, to `work`. */
export type WithDatabase = <T>(configFile: string | undefined, work: (knex: Knex, config: TetherConfig) => Promise<T>) => Promise<T>;

function keyTable(keys: SigningKeyInfo[]): string {
  const time = (value: Date | null) => value?.toISOString() ?? '';
  const rows = keys.map((key) => [key.kid, key.alg, key.state, time(key.activatedAt), time(key.retiredAt), time(key.publishedUntil)]);
  return renderTable(['KID', 'ALG', 'STATE', 'SIGNS FROM', 'STOPS SIGNING', 'PUBLISHED UNTIL'], rows);
}

/** A key as `--json` prints it: snake_case names, as every command's JSON (docs/cli.md#conventions). */
export function keyJson(key: SigningKeyInfo): Record<string, unknown> {
  const time = (value: Date | null) => value?.toISOString() ?? null;
  return {
    kid: key.kid,
    alg: key.alg,
    state: key.state,
    current: key.current,
    created_at: key.createdAt.toISOString(),
    activated_at: key.activatedAt.toISOString(),
    retired_at: time(key.retiredAt),
    published_until: time(key.publishedUntil),
  };
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

/** `tether keys list`. */
export async function keysList(context: KeysContext, options: { json?: boolean }): Promise<void> {
  const list = await listSigningKeys(context.knex);
  if (options.json) writeJsonTo(context.out, list.map(keyJson));
  else context.out.write(`${keyTable(list)}\n`);
}

/** `tether keys rotate`: stages a new key (or, immediately, makes it sign now). */
export async function keysRotate(context: KeysContext, options: { immediately?: boolean; json?: boolean }): Promise<void> {
  const policy = signingPolicyOf(context.config);
  const publicationDelaySeconds = options.immediately ? 0 : policy.publicationDelaySeconds;
  const rotated = await withKeyErrors(() => rotateSigningKey(context.knex, {
    ...policy, publicationDelaySeconds, algorithm: policy.algorithm, encryptionSecret: policy.encryptionSecret,
  }));
  if (options.json) {
    writeJsonTo(context.out, {
      kid: rotated.kid,
      alg: policy.algorithm,
      signs_from: rotated.activatesAt.toISOString(),
      publication_delay_seconds: publicationDelaySeconds,
      replaced: rotated.replaced.map((kid) => ({ kid, published_for_seconds_after: policy.retirementTailSeconds })),
    });
    return;
  }
  const lines = [
    options.immediately
      ? `new ${policy.algorithm} signing key ${rotated.kid} signs now (no publication delay: verifiers that cached the JWKS without it refetch it on the unknown kid, or refuse its tokens until their cache expires)`
      : `new ${policy.algorithm} signing key ${rotated.kid} is published now and signs from ${rotated.activatesAt.toISOString()} (after the publication delay of ${policy.publicationDelaySeconds} s)`,
    ...rotated.replaced.map((kid) => `${kid} signs until then, and stays published for ${policy.retirementTailSeconds} s more (the longest token lifetime + leeway)`),
    'running instances pick this up within seconds; no restart needed',
  ];
  context.out.write(`${lines.join('\n')}\n`);
}

/** `tether keys retire`: refuses (CommandError, exit 1) an unknown key, and the current or last key without `force`. */
export async function keysRetire(context: KeysContext, kid: string, options: { force?: boolean; withdrawNow?: boolean; json?: boolean }): Promise<void> {
  const policy = signingPolicyOf(context.config);
  const outcome = await retireSigningKey(context.knex, kid, {
    retirementTailSeconds: policy.retirementTailSeconds,
    configuredAlgorithm: policy.algorithm,
    force: options.force,
    withdrawNow: options.withdrawNow,
  });
  const { text, refused } = describeRetirement(outcome, policy.retirementTailSeconds);
  // Unknown or refused: one line on stderr and exit code 1, as every refusal.
  if (refused) throw new CommandError(text);
  if (options.json) writeJsonTo(context.out, retirementJson(outcome));
  else context.out.write(`${text}\n`);
}

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
    .action((options: { config?: string; json?: boolean }) => run(options.config, (context) => keysList(context, options), {
      method: 'GET', path: '/keys', input: {}, json: options.json,
    }));

  keys.command('rotate')
    .description('stage a new signing key: published now, signing after signing.publicationDelay; the key it replaces retires then')
    .addOption(configOption())
    .option('--immediately', 'sign with the new key at once (a compromised key): verifiers that cached the JWKS must refetch it')
    .addOption(jsonOption())
    .action((options: { config?: string; immediately?: boolean; json?: boolean }) => run(options.config, (context) => keysRotate(context, options), {
      method: 'POST', path: '/keys/rotate', input: { immediately: options.immediately }, json: options.json,
    }));

  // A kid is a base64url thumbprint and may begin with "-": not an option (command_conventions.ts).
  takesIds(keys.command('retire <kid>'))
    .description('stop signing with a key at once; it stays published until the tokens it signed have expired')
    .addOption(configOption())
    .option('--force', 'also retire the key that signs now, or the last key of its algorithm')
    .option('--withdraw-now', 'also remove it from the JWKS at once (a compromised key): tokens it signed stop verifying')
    .addOption(jsonOption())
    .action((kid: string, options: { config?: string; force?: boolean; withdrawNow?: boolean; json?: boolean }) => run(options.config, (context) => keysRetire(context, kid, options), {
      method: 'POST', path: `/keys/${encodeURIComponent(kid)}/retire`, input: { force: options.force, withdraw_now: options.withdrawNow }, json: options.json,
    }));
}

function retirementJson(result: RetireOutcome): Record<string, unknown> {
  if (result.outcome === 'retired') {
    return {
      kid: result.kid, alg: result.alg, retired: true, already_retired: false, published_until: result.publishedUntil.toISOString(),
      was_active: result.wasActive, promoted: result.promoted ?? null,
    };
  }
  return { kid: result.kid, retired: true, already_retired: true };
}

function describeRetirement(result: RetireOutcome, tailSeconds: number): { text: string; refused: boolean } {
  switch (result.outcome) {
    case 'unknown':
      return { text: `no signing key ${result.kid}${notFoundHint(result.kid)}`, refused: true };
    case 'already-retired':
      return { text: `${result.kid} is already retired`, refused: false };
    case 'retired': {
      const lines = [
        `retired ${result.kid}: it no longer signs; it is published until ${result.publishedUntil.toISOString()}`,
      ];
      if (result.wasActive) {
        lines.push(result.promoted
          ? `${result.promoted} (staged) signs from now`
          : `instances signing ${result.alg} create a new key as soon as they learn of this (within seconds)`);
      }
      return { text: lines.join('\n'), refused: false };
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
          refused: true,
        };
      }
      return {
        text: `refusing to retire ${kid}: it is the last ${refusal.alg} key; instances configured with signing.algorithm ${refusal.alg} would have none to sign with. ` +
          `If no instance signs ${refusal.alg} any more, add --force (it stays published ${tailSeconds} s for the tokens it signed).`,
        refused: true,
      };
    }
  }
}

import { ConfigError } from '../config/load_config.js';
import { KeyEncryptionError } from '../keys/key_encryption.js';
import { signingPolicyOf } from '../keys/signing_policy.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey, type RetireOutcome, type SigningKeyInfo } from '../keys/signing_keys.js';
import { CommandError } from './cli_errors.js';
import { notFoundHint, writeJsonTo } from './command_conventions.js';
import type { KeysContext } from './keys_commands.js';
import { renderTable } from '../text/table.js';

/**
 * What `tether keys list|rotate|retire` do (keys_commands.ts registers them), on the database or, next
 * to a running `tether dev`, inside it through the admin API (admin/operations.ts).
 */

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

import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { assertSecretStrength, open, seal } from './key_encryption.js';
import { assertKeyWriteProtection, lockKeyWrites, parseEnvelope } from './key_protection.js';

/**
 * A 32-byte random secret shared by all instances (e.g. the DPoP nonce key), created on first use
 * with the protection the stored keys have: sealed under the key-encryption secret when one is
 * configured (and a plaintext one found is sealed then), refused in plaintext next to encrypted keys.
 * Concurrent first calls agree on one value: `insert … on conflict do nothing`, then read back.
 */
export async function loadServerSecret(knex: Knex, name: string, options: { encryptionSecret?: string } = {}): Promise<Buffer> {
  const secret = options.encryptionSecret;
  assertSecretStrength(secret);
  let stored = await readStored(knex, name);
  if (stored === undefined) {
    const value = randomBytes(32).toString('base64url');
    await knex.transaction(async (trx) => {
      await lockKeyWrites(trx);
      if ((await readStored(trx, name)) !== undefined) return;
      await assertKeyWriteProtection(trx, secret);
      await trx.raw('insert into server_secrets (name, secret) values (?, ?) on conflict (name) do nothing', [
        name,
        secret === undefined ? value : JSON.stringify(seal(value, labelOf(name), secret)),
      ]);
    });
    stored = await readStored(knex, name);
    if (stored === undefined) throw new Error(`server secret ${name} vanished right after it was stored`);
  }
  const envelope = parseEnvelope(stored);
  const value = envelope === undefined ? stored : open(envelope, labelOf(name), secret);
  if (envelope === undefined && secret !== undefined) await sealPlaintext(knex, name, stored, secret);
  return Buffer.from(value, 'base64url');
}

function labelOf(name: string): string {
  return `server secret ${name}`;
}

async function readStored(knex: Knex | Knex.Transaction, name: string): Promise<string | undefined> {
  const row = (await knex('server_secrets').select('secret').where({ name }).first()) as { secret: string } | undefined;
  return row?.secret;
}

/** Compare-and-set: a concurrent instance sealing the same value first is fine. */
async function sealPlaintext(knex: Knex, name: string, plaintext: string, secret: string): Promise<void> {
  await knex('server_secrets').where({ name, secret: plaintext }).update({ secret: JSON.stringify(seal(plaintext, labelOf(name), secret)) });
}

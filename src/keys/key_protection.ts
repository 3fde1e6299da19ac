import type { Knex } from 'knex';
import { assertSecretStrength, isEnvelope, KeyEncryptionError, sealedWith, type Envelope } from './key_encryption.js';

/**
 * Every write of a key (the first signing key, a rotation, a server secret such as the DPoP nonce
 * secret) gets the protection the keys already stored have: once one stored key is encrypted at
 * rest, a plaintext one is refused, and a key is never sealed under a secret other than the one the
 * stored keys were sealed with — a shell without the secret, or with a mistyped one, cannot quietly
 * split the fleet's keys between protections.
 *
 * Callers run this inside the transaction that writes, under the key-write advisory lock, so two
 * writers with different secrets cannot both pass.
 */
export async function assertKeyWriteProtection(trx: Knex | Knex.Transaction, secret: string | undefined): Promise<void> {
  assertSecretStrength(secret);
  const sealed = await storedEnvelopes(trx);
  if (sealed.length === 0) return;
  if (secret === undefined) {
    throw new KeyEncryptionError(
      `refusing to store a key in plaintext: the stored keys are encrypted at rest (${sealed[0]!.label}${sealed.length > 1 ? ` and ${sealed.length - 1} more` : ''}); ` +
        'set TETHER_KEY_ENCRYPTION_SECRET to the secret the other instances use',
    );
  }
  const foreign = sealed.find(({ envelope }) => !sealedWith(envelope, secret));
  if (foreign) {
    throw new KeyEncryptionError(
      `refusing to store a key: the configured key-encryption secret is not the one ${foreign.label} was encrypted with`,
    );
  }
}

/** Arbitrary constant naming "write a signing key or server secret" among PostgreSQL advisory locks. */
export const KEY_WRITE_ADVISORY_LOCK = 7_301_002;

/** Serializes key writes across instances and the CLI, for the rest of the transaction. */
export async function lockKeyWrites(trx: Knex.Transaction): Promise<void> {
  await trx.raw('select pg_advisory_xact_lock(?)', [KEY_WRITE_ADVISORY_LOCK]);
}

/** Like {@link lockKeyWrites} but gives up at once: false when another writer holds the lock. */
export async function tryLockKeyWrites(trx: Knex.Transaction): Promise<boolean> {
  const result = (await trx.raw('select pg_try_advisory_xact_lock(?) as locked', [KEY_WRITE_ADVISORY_LOCK])) as { rows: { locked: boolean }[] };
  return result.rows[0]?.locked === true;
}

interface Sealed {
  label: string;
  envelope: Envelope;
}

/**
 * Envelopes that still matter: published signing keys (a withdrawn key is never decrypted again)
 * and server secrets.
 */
async function storedEnvelopes(trx: Knex | Knex.Transaction): Promise<Sealed[]> {
  const keys = (await trx('signing_keys')
    .select('kid', 'private_jwk')
    .whereRaw("private_jwk ->> 'enc' is not null")
    .andWhere((query) => query.whereNull('published_until').orWhereRaw('published_until > now()'))) as { kid: string; private_jwk: unknown }[];
  const secrets = (await trx('server_secrets').select('name', 'secret').whereRaw("secret like '{%'")) as { name: string; secret: string }[];
  return [
    ...keys.filter((row) => isEnvelope(row.private_jwk)).map((row) => ({ label: `signing key ${row.kid}`, envelope: row.private_jwk as Envelope })),
    ...secrets.flatMap((row) => {
      const envelope = parseEnvelope(row.secret);
      return envelope ? [{ label: `server secret ${row.name}`, envelope }] : [];
    }),
  ];
}

/** A server secret is stored as base64url (plaintext) or as an envelope's JSON (which base64url never starts with). */
export function parseEnvelope(stored: string): Envelope | undefined {
  if (!stored.startsWith('{')) return undefined;
  const parsed = JSON.parse(stored) as unknown;
  return isEnvelope(parsed) ? parsed : undefined;
}

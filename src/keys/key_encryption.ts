import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { MINIMUM_SECRET_LENGTH } from '../config/encryption_secret.js';

/**
 * Encryption at rest of the secrets every instance shares through the database (private signing
 * keys, the DPoP nonce secret): AES-256-GCM under a key derived per value (HKDF-SHA256 with a random
 * salt) from the key-encryption secret, with the value's name as authenticated data, so that an
 * envelope copied onto another row does not decrypt.
 */

/** A stored secret cannot be used or written: no secret, the wrong secret, or damaged data. */
export class KeyEncryptionError extends Error {
  override name = 'KeyEncryptionError';
}

export const ENVELOPE_FORMAT = 'tether-aes-256-gcm-v1';
const ENCRYPTION_INFO = 'tether signing key encryption v1';
const KEY_CHECK_INFO = 'tether signing key check v1';

/** What is stored in place of a secret value when a key-encryption secret is configured. */
export interface Envelope {
  enc: typeof ENVELOPE_FORMAT;
  kdf: 'hkdf-sha256';
  salt: string;
  iv: string;
  ciphertext: string;
  tag: string;
  /** Derived from the secret and salt; tells a wrong secret apart from damaged ciphertext. */
  key_check: string;
}

export function isEnvelope(value: unknown): value is Envelope {
  return value !== null && typeof value === 'object' && typeof (value as { enc?: unknown }).enc === 'string';
}

export function assertSecretStrength(secret: string | undefined): void {
  if (secret !== undefined && secret.length < MINIMUM_SECRET_LENGTH) {
    throw new KeyEncryptionError(
      `the key-encryption secret is too short (${secret.length} characters; use at least ${MINIMUM_SECRET_LENGTH}, e.g. 32 random bytes in base64)`,
    );
  }
}

/** Key material for one value: the per-value salt means no two values share an AES key. */
function deriveKeys(secret: string, salt: Buffer): { aesKey: Buffer; keyCheck: Buffer } {
  return {
    aesKey: Buffer.from(hkdfSync('sha256', secret, salt, ENCRYPTION_INFO, 32)),
    keyCheck: Buffer.from(hkdfSync('sha256', secret, salt, KEY_CHECK_INFO, 16)),
  };
}

/** Encrypts `plaintext`; `label` names the value (e.g. `signing key <kid>`) and is authenticated. */
export function seal(plaintext: string, label: string, secret: string): Envelope {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const { aesKey, keyCheck } = deriveKeys(secret, salt);
  const cipher = createCipheriv('aes-256-gcm', aesKey, iv);
  cipher.setAAD(Buffer.from(`tether ${label}`, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return {
    enc: ENVELOPE_FORMAT,
    kdf: 'hkdf-sha256',
    salt: salt.toString('base64url'),
    iv: iv.toString('base64url'),
    ciphertext: ciphertext.toString('base64url'),
    tag: cipher.getAuthTag().toString('base64url'),
    key_check: keyCheck.toString('base64url'),
  };
}

/** True when `envelope` was sealed under `secret` (checks the key check only; no decryption). */
export function sealedWith(envelope: Envelope, secret: string): boolean {
  const { keyCheck } = deriveKeys(secret, Buffer.from(envelope.salt, 'base64url'));
  const stored = Buffer.from(envelope.key_check, 'base64url');
  return stored.length === keyCheck.length && timingSafeEqual(stored, keyCheck);
}

/** Decrypts an envelope, or says exactly why it cannot: no secret, another secret, damaged data. */
export function open(envelope: Envelope, label: string, secret: string | undefined): string {
  if (envelope.enc !== ENVELOPE_FORMAT) {
    throw new KeyEncryptionError(`${label} is stored in an unknown format (${envelope.enc})`);
  }
  if (secret === undefined) {
    throw new KeyEncryptionError(
      `${label} is encrypted at rest, but no key-encryption secret is configured (set TETHER_KEY_ENCRYPTION_SECRET)`,
    );
  }
  if (!sealedWith(envelope, secret)) {
    throw new KeyEncryptionError(`the configured key-encryption secret is not the one ${label} was encrypted with`);
  }
  try {
    const { aesKey } = deriveKeys(secret, Buffer.from(envelope.salt, 'base64url'));
    const decipher = createDecipheriv('aes-256-gcm', aesKey, Buffer.from(envelope.iv, 'base64url'));
    decipher.setAAD(Buffer.from(`tether ${label}`, 'utf8'));
    decipher.setAuthTag(Buffer.from(envelope.tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new KeyEncryptionError(`${label} could not be decrypted: the stored data is damaged`, { cause });
  }
}

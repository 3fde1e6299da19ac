import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Knex } from 'knex';
import type { JwsAlgorithm } from '../config/jws_algorithms.js';

/** Signature algorithms Tether signs tokens with (config/jws_algorithms.ts). */
export type SigningAlgorithm = JwsAlgorithm;

/** How signing keys are created and protected. */
export interface SigningKeyOptions {
  algorithm: SigningAlgorithm;
  /**
   * When set, private keys are stored AES-256-GCM encrypted under a key derived from this secret
   * (HKDF-SHA256, so it must be high-entropy: e.g. 32 random bytes in base64, not a password).
   */
  encryptionSecret?: string;
}

/** Keys for oidc-provider's `jwks` option (private, current signing key first) and for publication. */
export interface LoadedSigningKeys {
  jwks: { keys: JWK[] };
  publicJwks: { keys: JWK[] };
}

/** A signing key as listed for operators (no key material). */
export interface SigningKeyInfo {
  kid: string;
  alg: string;
  createdAt: Date;
  activatedAt: Date;
  retiredAt: Date | null;
  /** This key signs new tokens for its algorithm. */
  current: boolean;
}

/** A stored private key cannot be used: no secret, the wrong secret, or damaged data. */
export class KeyEncryptionError extends Error {
  override name = 'KeyEncryptionError';
}

/** Stored in place of a private JWK when a key-encryption secret is configured. */
interface EncryptedPrivateJwk {
  enc: typeof ENVELOPE_FORMAT;
  kdf: 'hkdf-sha256';
  salt: string;
  iv: string;
  ciphertext: string;
  tag: string;
  /** Derived from the secret and salt; tells a wrong secret apart from damaged ciphertext. */
  key_check: string;
}

interface SigningKeyRow {
  kid: string;
  alg: string;
  private_jwk: JWK | EncryptedPrivateJwk;
  public_jwk: JWK;
  created_at: Date;
  activated_at: Date;
  retired_at: Date | null;
  active: boolean;
}

const ENVELOPE_FORMAT = 'tether-aes-256-gcm-v1';
const ENCRYPTION_INFO = 'tether signing key encryption v1';
const KEY_CHECK_INFO = 'tether signing key check v1';
const MINIMUM_SECRET_LENGTH = 16;

/** Arbitrary constant naming "create the first signing key" among PostgreSQL advisory locks. */
const FIRST_KEY_ADVISORY_LOCK = 7_301_002;

/**
 * Loads the signing keys every instance shares through the database, generating the first key for
 * `algorithm` when there is none (safe when several instances start at once on one PostgreSQL:
 * creation is serialized by an advisory lock and re-checked under it).
 *
 * `jwks` holds private JWKs in oidc-provider's order of preference: the current key (the newest
 * active, unretired key of `algorithm`) first, because oidc-provider signs with the first key
 * that matches the algorithm. Every unretired key is published, including keys staged by
 * `rotateSigningKey` with a future activation, so verifiers already know them when they start signing.
 */
export async function loadSigningKeys(knex: Knex, options: SigningKeyOptions): Promise<LoadedSigningKeys> {
  assertSecretStrength(options.encryptionSecret);
  let rows = await readPublishedKeys(knex);
  if (!rows.some((row) => isCurrentCandidate(row, options.algorithm))) {
    await createFirstKey(knex, options);
    rows = await readPublishedKeys(knex);
  }
  const ordered = orderCurrentFirst(rows, options.algorithm);
  const privateJwks = ordered.map((row) => decryptPrivateJwk(row, options.encryptionSecret));
  if (options.encryptionSecret !== undefined) await encryptPlaintextKeys(knex, ordered, privateJwks, options.encryptionSecret);
  return {
    jwks: { keys: ordered.map((row, index) => describeJwk(privateJwks[index] as JWK, row)) },
    publicJwks: { keys: ordered.map((row) => describeJwk(row.public_jwk, row)) },
  };
}

/**
 * Adds a new key for `options.algorithm` that becomes the current signing key at `activateAt`
 * (default: now). Older keys stay published, so tokens they signed keep verifying, until retired.
 * Running instances pick the new key up when they next load keys.
 */
export async function rotateSigningKey(
  knex: Knex,
  options: SigningKeyOptions & { activateAt?: Date },
): Promise<{ kid: string }> {
  assertSecretStrength(options.encryptionSecret);
  const key = await generateSigningKey(options);
  await insertKey(knex, key, options.activateAt);
  return { kid: key.kid };
}

/**
 * Withdraws a key: it no longer signs and is no longer published, so tokens it signed stop verifying
 * once verifiers refresh their JWKS. Retire a key only after its tokens have expired.
 */
export async function retireSigningKey(knex: Knex, kid: string): Promise<{ kid: string; retired: boolean }> {
  const updated = await knex('signing_keys').where({ kid }).whereNull('retired_at').update({ retired_at: knex.fn.now() });
  return { kid, retired: Number(updated) > 0 };
}

/** All keys, newest first, with their state; no key material. */
export async function listSigningKeys(knex: Knex): Promise<SigningKeyInfo[]> {
  const rows = (await knex('signing_keys')
    .select('kid', 'alg', 'created_at', 'activated_at', 'retired_at', knex.raw('activated_at <= now() as active'))
    .orderBy([{ column: 'activated_at', order: 'desc' }, { column: 'created_at', order: 'desc' }])) as SigningKeyRow[];
  // Rows are newest first, so the first unretired active key of each algorithm is its current one.
  const currentKids = new Set<string>();
  const algorithmsSeen = new Set<string>();
  for (const row of rows) {
    if (row.retired_at !== null || !row.active || algorithmsSeen.has(row.alg)) continue;
    algorithmsSeen.add(row.alg);
    currentKids.add(row.kid);
  }
  return rows.map((row) => ({
    kid: row.kid,
    alg: row.alg,
    createdAt: row.created_at,
    activatedAt: row.activated_at,
    retiredAt: row.retired_at,
    current: currentKids.has(row.kid),
  }));
}

/**
 * A 32-byte random secret shared by all instances (e.g. the DPoP nonce key), created on first use.
 * `insert … on conflict do nothing` then read back: concurrent first calls agree on one value.
 */
export async function loadServerSecret(knex: Knex, name: string): Promise<Buffer> {
  await knex.raw('insert into server_secrets (name, secret) values (?, ?) on conflict (name) do nothing', [
    name,
    randomBytes(32).toString('base64url'),
  ]);
  const row = (await knex('server_secrets').select('secret').where({ name }).first()) as { secret: string } | undefined;
  if (row === undefined) throw new Error(`server secret ${name} vanished right after it was stored`);
  return Buffer.from(row.secret, 'base64url');
}

interface GeneratedKey {
  kid: string;
  alg: SigningAlgorithm;
  privateJwk: JWK;
  publicJwk: JWK;
  storedPrivateJwk: JWK | EncryptedPrivateJwk;
}

async function generateSigningKey(options: SigningKeyOptions): Promise<GeneratedKey> {
  const { privateKey, publicKey } = await generateKeyPair(options.algorithm, { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const publicJwk = await exportJWK(publicKey);
  // RFC 7638 thumbprint: stable, derived from the key itself, identical on every instance.
  const kid = await calculateJwkThumbprint(publicJwk);
  const storedPrivateJwk =
    options.encryptionSecret === undefined ? privateJwk : encryptPrivateJwk(privateJwk, kid, options.encryptionSecret);
  return { kid, alg: options.algorithm, privateJwk, publicJwk, storedPrivateJwk };
}

async function insertKey(knex: Knex, key: GeneratedKey, activateAt?: Date): Promise<void> {
  await knex('signing_keys').insert({
    kid: key.kid,
    alg: key.alg,
    private_jwk: JSON.stringify(key.storedPrivateJwk),
    public_jwk: JSON.stringify(key.publicJwk),
    activated_at: activateAt ?? knex.fn.now(),
  });
}

/** Generates outside the lock (RSA takes a while), then inserts only if still nobody has. */
async function createFirstKey(knex: Knex, options: SigningKeyOptions): Promise<void> {
  const key = await generateSigningKey(options);
  await knex.transaction(async (trx) => {
    await trx.raw('select pg_advisory_xact_lock(?)', [FIRST_KEY_ADVISORY_LOCK]);
    const existing = await trx('signing_keys')
      .where({ alg: options.algorithm })
      .whereNull('retired_at')
      .whereRaw('activated_at <= now()')
      .first('kid');
    if (existing === undefined) await insertKey(trx, key);
  });
}

async function readPublishedKeys(knex: Knex): Promise<SigningKeyRow[]> {
  return (await knex('signing_keys')
    .select('*', knex.raw('activated_at <= now() as active'))
    .whereNull('retired_at')
    .orderBy([{ column: 'activated_at', order: 'desc' }, { column: 'created_at', order: 'desc' }])) as SigningKeyRow[];
}

function isCurrentCandidate(row: SigningKeyRow, algorithm: SigningAlgorithm): boolean {
  return row.alg === algorithm && row.active;
}

/** Current key, then the other active keys newest first, then keys staged for later activation. */
function orderCurrentFirst(rows: SigningKeyRow[], algorithm: SigningAlgorithm): SigningKeyRow[] {
  const current = rows.find((row) => isCurrentCandidate(row, algorithm));
  const others = rows.filter((row) => row !== current);
  const active = others.filter((row) => row.active);
  const staged = others.filter((row) => !row.active);
  return [...(current === undefined ? [] : [current]), ...active, ...staged];
}

function describeJwk(jwk: JWK, row: SigningKeyRow): JWK {
  return { ...jwk, kid: row.kid, alg: row.alg, use: 'sig' };
}

function isEnvelope(value: JWK | EncryptedPrivateJwk): value is EncryptedPrivateJwk {
  return typeof (value as { enc?: unknown }).enc === 'string';
}

function assertSecretStrength(secret: string | undefined): void {
  if (secret !== undefined && secret.length < MINIMUM_SECRET_LENGTH) {
    throw new KeyEncryptionError(
      `the key-encryption secret is too short (${secret.length} characters; use at least ${MINIMUM_SECRET_LENGTH}, ideally 32 random bytes)`,
    );
  }
}

/** Key material for one row: the per-row salt means no two keys share an AES key. */
function deriveKeys(secret: string, salt: Buffer): { aesKey: Buffer; keyCheck: Buffer } {
  return {
    aesKey: Buffer.from(hkdfSync('sha256', secret, salt, ENCRYPTION_INFO, 32)),
    keyCheck: Buffer.from(hkdfSync('sha256', secret, salt, KEY_CHECK_INFO, 16)),
  };
}

/** The kid is authenticated data, so an envelope copied onto another row fails to decrypt. */
function additionalData(kid: string): Buffer {
  return Buffer.from(`tether signing key ${kid}`, 'utf8');
}

function encryptPrivateJwk(jwk: JWK, kid: string, secret: string): EncryptedPrivateJwk {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const { aesKey, keyCheck } = deriveKeys(secret, salt);
  const cipher = createCipheriv('aes-256-gcm', aesKey, iv);
  cipher.setAAD(additionalData(kid));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()]);
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

function decryptPrivateJwk(row: SigningKeyRow, secret: string | undefined): JWK {
  const stored = row.private_jwk;
  if (!isEnvelope(stored)) return stored;
  if (stored.enc !== ENVELOPE_FORMAT) {
    throw new KeyEncryptionError(`signing key ${row.kid} is stored in an unknown format (${stored.enc})`);
  }
  if (secret === undefined) {
    throw new KeyEncryptionError(
      `signing key ${row.kid} is encrypted at rest, but no key-encryption secret is configured`,
    );
  }
  const { aesKey, keyCheck } = deriveKeys(secret, Buffer.from(stored.salt, 'base64url'));
  const storedCheck = Buffer.from(stored.key_check, 'base64url');
  if (storedCheck.length !== keyCheck.length || !timingSafeEqual(storedCheck, keyCheck)) {
    throw new KeyEncryptionError(
      `the configured key-encryption secret is not the one signing key ${row.kid} was encrypted with`,
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', aesKey, Buffer.from(stored.iv, 'base64url'));
    decipher.setAAD(additionalData(row.kid));
    decipher.setAuthTag(Buffer.from(stored.tag, 'base64url'));
    const plaintext = Buffer.concat([decipher.update(Buffer.from(stored.ciphertext, 'base64url')), decipher.final()]);
    return JSON.parse(plaintext.toString('utf8')) as JWK;
  } catch (cause) {
    throw new KeyEncryptionError(`signing key ${row.kid} could not be decrypted: the stored data is damaged`, { cause });
  }
}

/**
 * Keys created before a secret was configured are encrypted as soon as one is. Concurrent instances
 * may both do it; each writes a valid envelope of the same key, so either result is fine.
 */
async function encryptPlaintextKeys(knex: Knex, rows: SigningKeyRow[], privateJwks: JWK[], secret: string): Promise<void> {
  for (const [index, row] of rows.entries()) {
    if (isEnvelope(row.private_jwk)) continue;
    const envelope = encryptPrivateJwk(privateJwks[index] as JWK, row.kid, secret);
    await knex('signing_keys')
      .where({ kid: row.kid })
      .whereRaw("private_jwk ->> 'enc' is null")
      .update({ private_jwk: JSON.stringify(envelope) });
  }
}

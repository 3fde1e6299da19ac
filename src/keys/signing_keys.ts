import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Knex } from 'knex';
import type { JwsAlgorithm } from '../config/jws_algorithms.js';
import { assertSecretStrength, isEnvelope, open, seal, type Envelope } from './key_encryption.js';
import { activeKeyOf, describeJwk, keyRingAt, publishedKeysOf, signingKeysOf, type KeyRing, type KeyState, type KeyWithState, type StoredSigningKey } from './key_ring.js';
import { assertKeyWriteProtection, lockKeyWrites, tryLockKeyWrites } from './key_protection.js';

export { KeyEncryptionError } from './key_encryption.js';

/**
 * Signing keys as every instance shares them through the database: created, staged, activated,
 * retired and withdrawn here (key_ring.ts says what each state means); running instances learn of
 * every change through live_signing_keys.ts.
 */

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

/** When a rotation's new key signs, and how long the keys it replaces stay published. */
export interface RotationTiming {
  /** The new key is published this long before it signs (0: at once, for a compromised key). */
  publicationDelaySeconds: number;
  /** Replaced keys stay published this long after they stop signing (the longest token lifetime + leeway). */
  retirementTailSeconds: number;
}

/** Keys for oidc-provider (`jwks`: private, the signing ones) and for publication (`publicJwks`). */
export interface LoadedSigningKeys {
  /** The active key of each algorithm, the configured algorithm's first (oidc-provider signs with the first match). */
  jwks: { keys: JWK[] };
  /** Every published key (staged, active, superseded, retiring): the JWKS. */
  publicJwks: { keys: JWK[] };
  ring: KeyRing;
}

/** A signing key as listed for operators (no key material). */
export interface SigningKeyInfo {
  kid: string;
  alg: string;
  state: KeyState;
  createdAt: Date;
  activatedAt: Date;
  retiredAt: Date | null;
  publishedUntil: Date | null;
  /** This key signs new tokens for its algorithm (state `active`). */
  current: boolean;
}

interface SigningKeyRow {
  kid: string | null;
  alg: string;
  private_jwk: JWK | Envelope;
  public_jwk: JWK;
  created_at: Date;
  activated_at: Date;
  retired_at: Date | null;
  published_until: Date | null;
  read_at: Date;
}

/**
 * Loads the signing keys at start, making sure the configured algorithm has an active key (the
 * first start creates it; safe when several instances start at once: creation is serialized by an
 * advisory lock and re-checked under it). Every published private key is decrypted, so a missing
 * or wrong secret stops the start rather than the first rotation.
 */
export async function loadSigningKeys(knex: Knex, options: SigningKeyOptions): Promise<LoadedSigningKeys> {
  assertSecretStrength(options.encryptionSecret);
  const ring = await readKeyRingWithActiveKey(knex, options);
  for (const key of publishedKeysOf(ring, options.algorithm)) privateJwkOf(key, options.encryptionSecret);
  if (options.encryptionSecret !== undefined) await encryptPlaintextKeys(knex, ring, options.encryptionSecret);
  return snapshotOf(ring, options);
}

/** The keys to sign and publish with, from a ring; decrypts only the keys that sign. */
export function snapshotOf(ring: KeyRing, options: SigningKeyOptions): LoadedSigningKeys {
  return {
    jwks: { keys: signingKeysOf(ring, options.algorithm).map((key) => describeJwk(privateJwkOf(key, options.encryptionSecret), key)) },
    publicJwks: { keys: publishedKeysOf(ring, options.algorithm).map((key) => describeJwk(key.publicJwk, key)) },
    ring,
  };
}

/** The published keys (every state but `retired`), or all of them, with the database's clock. */
export async function readKeyRing(knex: Knex | Knex.Transaction, options: { includeRetired?: boolean } = {}): Promise<KeyRing> {
  const published = options.includeRetired ? 'true' : '(k.published_until is null or k.published_until > t.read_at)';
  // One statement: the clock and the rows together, even when there are no rows.
  const result = (await knex.raw(
    `select k.*, t.read_at from (select now() as read_at) t left join signing_keys k on ${published}`,
  )) as { rows: SigningKeyRow[] };
  const at = result.rows[0]!.read_at;
  const rows = result.rows.filter((row) => row.kid !== null).map(storedKeyOf);
  return keyRingAt(rows, at);
}

/** Reads the ring; when the configured algorithm has no active key, makes one (as at first start) and reads again. */
export async function readKeyRingWithActiveKey(knex: Knex, options: SigningKeyOptions): Promise<KeyRing> {
  const ring = await readKeyRing(knex);
  if (activeKeyOf(ring, options.algorithm)) return ring;
  await ensureActiveKey(knex, options);
  return readKeyRing(knex);
}

/**
 * Adds a new key for `options.algorithm`, published now and signing after the publication delay,
 * and schedules the retirement of the keys it replaces at that moment (they stay published for the
 * retirement tail). Refused when it would not get the protection the stored keys have.
 */
export async function rotateSigningKey(
  knex: Knex,
  options: SigningKeyOptions & RotationTiming,
): Promise<{ kid: string; activatesAt: Date; replaced: string[] }> {
  assertSecretStrength(options.encryptionSecret);
  const key = await generateSigningKey(options);
  return knex.transaction(async (trx) => {
    await lockKeyWrites(trx);
    await assertKeyWriteProtection(trx, options.encryptionSecret);
    return insertRotatedKey(trx, key, options);
  });
}

/**
 * Scheduled rotation (`signing.rotateEvery`): when the newest key of the algorithm began (or will
 * begin) signing more than `rotateEverySeconds - publicationDelaySeconds` ago, stages its successor
 * so that it signs `rotateEverySeconds` after it. Any number of instances may call this at once:
 * the decision is re-checked under the key-write lock, and an instance that does not get the lock
 * leaves the rotation to the one that has it. Returns the new kid, if this call rotated.
 */
export async function rotateIfDue(
  knex: Knex,
  options: SigningKeyOptions & RotationTiming & { rotateEverySeconds: number },
): Promise<string | undefined> {
  if (rotationDueAt(await readKeyRing(knex), options) === undefined) return undefined;
  const key = await generateSigningKey(options);
  return knex.transaction(async (trx) => {
    if (!(await tryLockKeyWrites(trx))) return undefined;
    const due = rotationDueAt(await readKeyRing(trx), options);
    if (due === undefined) return undefined;
    await assertKeyWriteProtection(trx, options.encryptionSecret);
    const { kid } = await insertRotatedKey(trx, key, { ...options, activateAt: due });
    return kid;
  });
}

/** Why `keys retire` refuses a key (unless forced). */
export type RetireRefusal =
  | { reason: 'current'; alg: string; successor?: { kid: string; activatedAt: Date } }
  | { reason: 'last'; alg: string };

export type RetireOutcome =
  | { outcome: 'retired'; kid: string; alg: string; wasActive: boolean; publishedUntil: Date; promoted?: string }
  | { outcome: 'refused'; kid: string; refusal: RetireRefusal }
  | { outcome: 'unknown'; kid: string }
  | { outcome: 'already-retired'; kid: string };

/**
 * Retires a key: it stops signing at once and stays published for `retirementTailSeconds` (or leaves
 * the JWKS at once with `withdrawNow`, for a compromised key: the tokens it signed stop verifying).
 * Refuses, unless `force`, the key that signs now (tokens would be signed by a key verifiers may not
 * have fetched yet) and the last key of an algorithm. When a forced retirement leaves the algorithm
 * without an active key, its staged successor signs at once, or else instances configured for it
 * create a new one when they learn of the change.
 */
export async function retireSigningKey(
  knex: Knex,
  kid: string,
  options: { retirementTailSeconds: number; configuredAlgorithm: string; force?: boolean; withdrawNow?: boolean },
): Promise<RetireOutcome> {
  return knex.transaction(async (trx) => {
    await lockKeyWrites(trx);
    const ring = await readKeyRing(trx, { includeRetired: true });
    const key = ring.keys.find((candidate) => candidate.kid === kid);
    if (!key) return { outcome: 'unknown', kid };
    if (key.state === 'retired' || (key.state === 'retiring' && !options.withdrawNow)) return { outcome: 'already-retired', kid };
    const refusal = options.force ? undefined : retireRefusal(ring, key, options.configuredAlgorithm);
    if (refusal) return { outcome: 'refused', kid, refusal };

    const tail = options.withdrawNow ? 0 : options.retirementTailSeconds;
    const [updated] = (await trx('signing_keys')
      .where({ kid })
      .update({
        retired_at: trx.raw('least(coalesce(retired_at, now()), now())'),
        published_until: trx.raw('now() + ?::float8 * interval \'1 second\'', [tail]),
      })
      .returning('published_until')) as { published_until: Date }[];
    const promoted = key.state === 'active' ? await promoteStagedSuccessor(trx, key.alg) : undefined;
    return { outcome: 'retired', kid, alg: key.alg, wasActive: key.state === 'active', publishedUntil: updated!.published_until, promoted };
  });
}

/** All keys, newest first, with their state; no key material. */
export async function listSigningKeys(knex: Knex): Promise<SigningKeyInfo[]> {
  const ring = await readKeyRing(knex, { includeRetired: true });
  return ring.keys.map((key) => ({
    kid: key.kid,
    alg: key.alg,
    state: key.state,
    createdAt: key.createdAt,
    activatedAt: key.activatedAt,
    retiredAt: key.retiredAt,
    publishedUntil: key.publishedUntil,
    current: key.state === 'active',
  }));
}

/** The private JWK of a stored key, decrypted when it is stored encrypted. */
export function privateJwkOf(key: StoredSigningKey, secret: string | undefined): JWK {
  if (!isEnvelope(key.privateJwk)) return key.privateJwk;
  return JSON.parse(open(key.privateJwk, `signing key ${key.kid}`, secret)) as JWK;
}

interface GeneratedKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: JWK;
  privateJwk: JWK;
}

async function generateSigningKey(options: SigningKeyOptions): Promise<GeneratedKey> {
  const { privateKey, publicKey } = await generateKeyPair(options.algorithm, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  // RFC 7638 thumbprint: stable, derived from the key itself, identical on every instance.
  const kid = await calculateJwkThumbprint(publicJwk);
  return { kid, alg: options.algorithm, publicJwk, privateJwk: await exportJWK(privateKey) };
}

function storedPrivateJwk(key: GeneratedKey, secret: string | undefined): JWK | Envelope {
  return secret === undefined ? key.privateJwk : seal(JSON.stringify(key.privateJwk), `signing key ${key.kid}`, secret);
}

/** Inserts `key`, activating `publicationDelaySeconds` from now (or at `activateAt`), and schedules the retirement of the keys it replaces. */
async function insertRotatedKey(
  trx: Knex.Transaction,
  key: GeneratedKey,
  options: SigningKeyOptions & RotationTiming & { activateAt?: Date },
): Promise<{ kid: string; activatesAt: Date; replaced: string[] }> {
  const activatedAt = options.activateAt
    ? trx.raw('greatest(?::timestamptz, now())', [options.activateAt])
    : trx.raw('now() + ?::float8 * interval \'1 second\'', [options.publicationDelaySeconds]);
  const [inserted] = (await trx('signing_keys')
    .insert({
      kid: key.kid,
      alg: key.alg,
      private_jwk: JSON.stringify(storedPrivateJwk(key, options.encryptionSecret)),
      public_jwk: JSON.stringify(key.publicJwk),
      activated_at: activatedAt,
    })
    .returning('activated_at')) as { activated_at: Date }[];
  const activatesAt = inserted!.activated_at;
  // The keys this one replaces sign until it does, then stay published for the tail.
  const replaced = (await trx('signing_keys')
    .where({ alg: key.alg })
    .whereNot({ kid: key.kid })
    .where('activated_at', '<', activatesAt)
    .where((query) => query.whereNull('retired_at').orWhere('retired_at', '>', activatesAt))
    .update({
      retired_at: activatesAt,
      published_until: trx.raw('?::timestamptz + ?::float8 * interval \'1 second\'', [activatesAt, options.retirementTailSeconds]),
    })
    .returning('kid')) as { kid: string }[];
  return { kid: key.kid, activatesAt, replaced: replaced.map((row) => row.kid) };
}

/**
 * When the successor of the newest key of the algorithm must begin signing, if it must be staged
 * now (that time is at most the publication delay away); undefined when no rotation is due.
 */
function rotationDueAt(ring: KeyRing, options: SigningKeyOptions & RotationTiming & { rotateEverySeconds: number }): Date | undefined {
  const candidates = ring.keys.filter((key) => key.alg === options.algorithm && (key.state === 'active' || key.state === 'staged'));
  const newest = candidates[0];
  if (!newest) return undefined;
  const due = newest.activatedAt.getTime() + options.rotateEverySeconds * 1000;
  const stageFrom = due - options.publicationDelaySeconds * 1000;
  if (ring.at.getTime() < stageFrom) return undefined;
  return new Date(Math.max(due, ring.at.getTime() + options.publicationDelaySeconds * 1000));
}

/**
 * The active key of the configured algorithm signs now; the last unretired key of an algorithm would
 * leave instances signing it without a key. (The active key of another algorithm, with others of
 * its kind, may still sign on instances configured for it during an algorithm change: also refused.)
 */
function retireRefusal(ring: KeyRing, key: KeyWithState, configuredAlgorithm: string): RetireRefusal | undefined {
  const current = (): RetireRefusal => {
    const successor = earliestStaged(ring, key.alg);
    return { reason: 'current', alg: key.alg, successor: successor && { kid: successor.kid, activatedAt: successor.activatedAt } };
  };
  if (key.state === 'active' && key.alg === configuredAlgorithm) return current();
  const others = ring.keys.filter((other) => other.alg === key.alg && other.kid !== key.kid && ['staged', 'active', 'superseded'].includes(other.state));
  if (others.length === 0) return { reason: 'last', alg: key.alg };
  return key.state === 'active' ? current() : undefined;
}

function earliestStaged(ring: KeyRing, alg: string): KeyWithState | undefined {
  return ring.keys
    .filter((key) => key.alg === alg && key.state === 'staged')
    .sort((a, b) => a.activatedAt.getTime() - b.activatedAt.getTime())[0];
}

/** After the active key was retired: the earliest staged key of the algorithm signs at once, if there is one. */
async function promoteStagedSuccessor(trx: Knex.Transaction, alg: string): Promise<string | undefined> {
  const ring = await readKeyRing(trx);
  if (activeKeyOf(ring, alg)) return undefined;
  const staged = earliestStaged(ring, alg);
  if (!staged) return undefined;
  await trx('signing_keys').where({ kid: staged.kid }).update({ activated_at: trx.fn.now() });
  return staged.kid;
}

/**
 * Makes sure the configured algorithm has an active key: promotes its earliest staged key if there
 * is one, else creates a key (generated outside the lock: RSA takes a while) — re-checked under the
 * key-write lock, so instances starting together agree on one key.
 */
async function ensureActiveKey(knex: Knex, options: SigningKeyOptions): Promise<void> {
  const key = await generateSigningKey(options);
  await knex.transaction(async (trx) => {
    await lockKeyWrites(trx);
    const ring = await readKeyRing(trx);
    if (activeKeyOf(ring, options.algorithm)) return;
    if (ring.keys.some((candidate) => candidate.alg === options.algorithm && candidate.state === 'staged')) {
      await promoteStagedSuccessor(trx, options.algorithm);
      return;
    }
    await assertKeyWriteProtection(trx, options.encryptionSecret);
    await trx('signing_keys').insert({
      kid: key.kid,
      alg: key.alg,
      private_jwk: JSON.stringify(storedPrivateJwk(key, options.encryptionSecret)),
      public_jwk: JSON.stringify(key.publicJwk),
    });
  });
}

/**
 * Keys created before a secret was configured are encrypted as soon as one is. Concurrent instances
 * may both do it; each writes a valid envelope of the same key, so either result is fine.
 */
export async function encryptPlaintextKeys(knex: Knex, ring: KeyRing, secret: string): Promise<void> {
  for (const key of publishedKeysOf(ring, '')) {
    if (isEnvelope(key.privateJwk)) continue;
    const envelope = seal(JSON.stringify(key.privateJwk), `signing key ${key.kid}`, secret);
    await knex('signing_keys')
      .where({ kid: key.kid })
      .whereRaw("private_jwk ->> 'enc' is null")
      .update({ private_jwk: JSON.stringify(envelope) });
  }
}

function storedKeyOf(row: SigningKeyRow): StoredSigningKey {
  return {
    kid: row.kid!,
    alg: row.alg,
    privateJwk: row.private_jwk,
    publicJwk: row.public_jwk,
    createdAt: row.created_at,
    activatedAt: row.activated_at,
    retiredAt: row.retired_at,
    publishedUntil: row.published_until,
  };
}

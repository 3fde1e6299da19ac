import type { JWK } from 'jose';
import type { Envelope } from './key_encryption.js';

/**
 * The life of a signing key, as every instance derives it from the same rows and the database's clock
 * (docs/operations.md#signing-keys):
 *
 *   staged ──(activated_at)──▶ active ──(retired_at)──▶ retiring ──(published_until)──▶ retired
 *
 * - staged: published (verifiers learn it), does not sign yet.
 * - active: the newest activated, unretired key of its algorithm; the only one that signs.
 * - superseded: activated and unretired but a newer key of its algorithm is active (keys rotated
 *   before retirement was scheduled at rotation); published, never signs.
 * - retiring: retired (stops signing at once), still published until every token it signed expired.
 * - retired: no longer published; nothing it signed is still valid.
 *
 * Pure: rows and a time in, states out.
 */

export type KeyState = 'staged' | 'active' | 'superseded' | 'retiring' | 'retired';

/** A row of `signing_keys`. */
export interface StoredSigningKey {
  kid: string;
  alg: string;
  /** The private JWK, or its envelope when a key-encryption secret is configured. */
  privateJwk: JWK | Envelope;
  publicJwk: JWK;
  createdAt: Date;
  activatedAt: Date;
  retiredAt: Date | null;
  publishedUntil: Date | null;
}

export interface KeyWithState extends StoredSigningKey {
  state: KeyState;
}

export interface KeyRing {
  /** The database's clock when the rows were read. */
  at: Date;
  keys: KeyWithState[];
  /** When the next state change happens by the clock alone (an activation, retirement or withdrawal). */
  nextTransitionAt: Date | undefined;
}

const isPast = (time: Date | null, at: Date): boolean => time !== null && time.getTime() <= at.getTime();

/** Newest first: by activation, then by creation. */
function newestFirst(a: StoredSigningKey, b: StoredSigningKey): number {
  return b.activatedAt.getTime() - a.activatedAt.getTime() || b.createdAt.getTime() - a.createdAt.getTime();
}

/** Signs, or could sign if it were the newest: activated, not retired, not withdrawn. */
function isSigningCandidate(key: StoredSigningKey, at: Date): boolean {
  return isPast(key.activatedAt, at) && !isPast(key.retiredAt, at) && !isPast(key.publishedUntil, at);
}

export function keyRingAt(rows: readonly StoredSigningKey[], at: Date): KeyRing {
  const sorted = [...rows].sort(newestFirst);
  const activeKids = new Set<string>();
  const algorithmsWithActiveKey = new Set<string>();
  for (const key of sorted) {
    if (!isSigningCandidate(key, at) || algorithmsWithActiveKey.has(key.alg)) continue;
    algorithmsWithActiveKey.add(key.alg);
    activeKids.add(key.kid);
  }
  const stateOf = (key: StoredSigningKey): KeyState => {
    if (isPast(key.publishedUntil, at)) return 'retired';
    if (isPast(key.retiredAt, at)) return 'retiring';
    if (!isPast(key.activatedAt, at)) return 'staged';
    return activeKids.has(key.kid) ? 'active' : 'superseded';
  };
  const upcoming = sorted
    .flatMap((key) => [key.activatedAt, key.retiredAt, key.publishedUntil])
    .filter((time): time is Date => time !== null && time.getTime() > at.getTime())
    .sort((a, b) => a.getTime() - b.getTime());
  return { at, keys: sorted.map((key) => ({ ...key, state: stateOf(key) })), nextTransitionAt: upcoming[0] };
}

/** The keys that sign: the active key of each algorithm, the one of `preferred` first. */
export function signingKeysOf(ring: KeyRing, preferred: string): KeyWithState[] {
  const active = ring.keys.filter((key) => key.state === 'active');
  return [...active.filter((key) => key.alg === preferred), ...active.filter((key) => key.alg !== preferred)];
}

/**
 * The keys verifiers may meet in a valid token (and Tether verifies its own tokens with): the signing
 * keys first (the one of `preferred` leading), then the others newest first.
 */
export function publishedKeysOf(ring: KeyRing, preferred: string): KeyWithState[] {
  const signing = signingKeysOf(ring, preferred);
  return [...signing, ...ring.keys.filter((key) => key.state !== 'retired' && !signing.includes(key))];
}

/** The active key of `algorithm`, if there is one. */
export function activeKeyOf(ring: KeyRing, algorithm: string): KeyWithState | undefined {
  return ring.keys.find((key) => key.state === 'active' && key.alg === algorithm);
}

/** A published key as the JWKS lists it (RFC 7517 §4: `kid`, `alg`, `use`). */
export function describeJwk(jwk: JWK, key: { kid: string; alg: string }): JWK {
  return { ...jwk, kid: key.kid, alg: key.alg, use: 'sig' };
}

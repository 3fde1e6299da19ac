import type { Knex } from 'knex';

import { hashIdentifier } from './hash_id.js';

/**
 * Records the use of a federated client assertion once (RFC 7523 §3 `jti`, one-time use). Returns
 * true when this call recorded it, false when it was recorded before and is still unexpired: the
 * caller must then refuse the assertion. One atomic statement, so two instances (or two concurrent
 * requests) presenting one assertion authenticate exactly one of them. An expired record that has
 * not been swept yet counts as absent (the token itself is expired by then).
 */
export async function recordAssertionOnce(knex: Knex, assertion: { key: string; expiresAt: Date }): Promise<boolean> {
  const result = await knex.raw(
    `insert into federated_assertions (key_hash, expires_at) values (?, ?)
     on conflict (key_hash) do update set expires_at = excluded.expires_at
       where federated_assertions.expires_at <= now()
     returning key_hash`,
    [hashIdentifier(assertion.key), assertion.expiresAt],
  ).options({ name: 'tether_record_federated_assertion' });
  return ((result as { rows?: unknown[] }).rows ?? []).length === 1;
}

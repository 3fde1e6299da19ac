import type { Knex } from 'knex';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

import { hashIdentifier } from './hash_id.js';

/** The model oidc-provider uses to remember client assertion and DPoP proof `jti`s. */
const REPLAY_MODEL = 'ReplayDetection';

/** Non-expired rows only; `now()` is the database clock, shared by every instance. */
const VISIBLE = '(expires_at is null or expires_at > now())';

interface PayloadRow {
  payload: AdapterPayload;
}

/**
 * Payload members whose value is presented as a credential: `jti` is an opaque token's value itself
 * (oidc-provider's opaque format returns the id as the token; likewise codes, request URIs and
 * session cookies), `userCode` is what a device user types. They are kept only as hashes in the
 * row's columns, never in `payload`, and put back from the value a lookup was made with.
 */
const PRESENTED_MEMBERS = ['jti', 'userCode'] as const;

/**
 * oidc-provider adapter factory storing every model in the `oidc_payloads` table.
 *
 * Ids, session uids, user codes and grant ids are stored as SHA-256 (base64url) hashes: an opaque
 * token id is a bearer secret, so nothing in the table can be presented as a token
 * ({@link PRESENTED_MEMBERS} are left out of the stored payload). `grant_id` therefore holds the hash
 * of the grant id, i.e. the `id_hash` of the Grant row. Expired rows are invisible to every lookup
 * (and later removed by `startExpirySweeper`).
 *
 * `find(id)` returns the payload with `jti: id`; `findByUid` and `findByUserCode` return it without
 * `jti`, which only the client holds. Those two serve end-user flows (sessions, device codes) that
 * Tether does not route (provider/create_provider.ts, http/served_routes.ts).
 */
export function createAdapterFactory(knex: Knex): (modelName: string) => Adapter {
  return (modelName: string) => new KnexAdapter(knex, modelName);
}

/** One model's view of `oidc_payloads`; oidc-provider creates one per model and caches it. */
class KnexAdapter implements Adapter {
  constructor(
    private readonly knex: Knex,
    private readonly model: string,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    if (this.model === REPLAY_MODEL) {
      await this.insertReplayRecordOnce(id, payload, expiresIn);
      return;
    }
    await this.knex.raw(
      `insert into oidc_payloads
         (model, id_hash, payload, grant_id, uid_hash, user_code_hash, expires_at, consumed_at)
       values (?, ?, ?::jsonb, ?, ?, ?, ${expiresAtSql()}, ${consumedAtSql()})
       on conflict (model, id_hash) do update set
         payload = excluded.payload, grant_id = excluded.grant_id, uid_hash = excluded.uid_hash,
         user_code_hash = excluded.user_code_hash, expires_at = excluded.expires_at,
         consumed_at = excluded.consumed_at`,
      this.rowValues(id, payload, expiresIn),
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const payload = await this.findOne('id_hash', id);
    return payload && { ...payload, jti: id };
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findOne('uid_hash', uid);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const payload = await this.findOne('user_code_hash', userCode);
    return payload && { ...payload, userCode };
  }

  /**
   * Marks the row consumed (`consumed_at` and `payload.consumed`, epoch seconds, as oidc-provider
   * expects). Only an unconsumed, unexpired row is updated: oidc-provider checks `consumed` before
   * calling this, so when two requests redeem one code or refresh token at the same moment, the
   * one that loses here gets the same error it would have got had it arrived second.
   */
  async consume(id: string): Promise<void> {
    const result = await this.knex.raw(
      `update oidc_payloads
         set consumed_at = now(),
             payload = jsonb_set(payload, '{consumed}', to_jsonb(floor(extract(epoch from now()))::bigint))
       where model = ? and id_hash = ? and consumed_at is null and ${VISIBLE}
       returning id_hash`,
      [this.model, hashIdentifier(id)],
    );
    if (rowsOf(result).length === 0) throw alreadyConsumedError(this.model);
  }

  async destroy(id: string): Promise<void> {
    await this.knex('oidc_payloads').where({ model: this.model, id_hash: hashIdentifier(id) }).delete();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.knex('oidc_payloads').where({ model: this.model, grant_id: hashIdentifier(grantId) }).delete();
  }

  /**
   * ReplayDetection (client assertion and DPoP `jti`s): oidc-provider does find-then-save, which two
   * concurrent requests can both pass. The insert here is the real check: if a live record already
   * exists nothing is written and the request fails. An expired, unswept record is replaced.
   */
  private async insertReplayRecordOnce(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const result = await this.knex.raw(
      `insert into oidc_payloads
         (model, id_hash, payload, grant_id, uid_hash, user_code_hash, expires_at, consumed_at)
       values (?, ?, ?::jsonb, ?, ?, ?, ${expiresAtSql()}, ${consumedAtSql()})
       on conflict (model, id_hash) do update set payload = excluded.payload, expires_at = excluded.expires_at
         where oidc_payloads.expires_at <= now()
       returning id_hash`,
      this.rowValues(id, payload, expiresIn),
    );
    if (rowsOf(result).length === 0) {
      throw new errors.InvalidClient('client authentication failed', 'client assertion replay detected');
    }
  }

  private rowValues(id: string, payload: AdapterPayload, expiresIn: number | undefined): Knex.RawBinding[] {
    return [
      this.model,
      hashIdentifier(id),
      JSON.stringify(storedPayloadOf(payload)),
      hashOrNull(payload.grantId),
      hashOrNull(payload.uid),
      hashOrNull(payload.userCode),
      typeof expiresIn === 'number' ? expiresIn : null,
      typeof payload.consumed === 'number' ? payload.consumed : null,
    ];
  }

  private async findOne(column: 'id_hash' | 'uid_hash' | 'user_code_hash', value: string): Promise<AdapterPayload | undefined> {
    const row = (await this.knex('oidc_payloads')
      .select('payload')
      .where({ model: this.model, [column]: hashIdentifier(value) })
      .whereRaw(VISIBLE)
      .first()) as PayloadRow | undefined;
    return row?.payload;
  }
}

/** The payload as stored: without the members a client presents (they are in the hashed columns). */
function storedPayloadOf(payload: AdapterPayload): AdapterPayload {
  const stored: AdapterPayload = { ...payload };
  for (const member of PRESENTED_MEMBERS) delete stored[member];
  return stored;
}

/** `expiresIn` is seconds from now; null (no expiry) stays null through the arithmetic. */
function expiresAtSql(): string {
  return 'now() + make_interval(secs => ?::double precision)';
}

function consumedAtSql(): string {
  return 'to_timestamp(?::double precision)';
}

function hashOrNull(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? hashIdentifier(value) : null;
}

function rowsOf(result: unknown): unknown[] {
  return (result as { rows?: unknown[] }).rows ?? [];
}

/** The error oidc-provider itself throws when the same artefact is redeemed a second time. */
function alreadyConsumedError(model: string): Error {
  switch (model) {
    case 'PushedAuthorizationRequest':
      return new errors.InvalidRequestUri('request_uri is invalid, expired, or was already used');
    case 'RefreshToken':
      return new errors.InvalidGrant('refresh token already used');
    case 'AuthorizationCode':
      return new errors.InvalidGrant('authorization code already consumed');
    case 'DeviceCode':
      return new errors.InvalidGrant('device code already consumed');
    case 'BackchannelAuthenticationRequest':
      return new errors.InvalidGrant('backchannel authentication request already consumed');
    default:
      return new errors.InvalidGrant(`${model} already consumed or not found`);
  }
}

/** Options for the background removal of expired rows. */
export interface ExpirySweeperOptions {
  /** How often to sweep. */
  intervalMs: number;
  /** How long after expiry an `oidc_payloads` row is kept (default 10 minutes), e.g. for support. */
  graceMs?: number;
  /** At most this many rows per table per sweep (default 1000), so one sweep never holds a long lock. */
  batchSize?: number;
  /** Called when a sweep fails; the sweeper keeps running. Default: a process warning. */
  onError?: (error: unknown) => void;
}

/** Rows removed by one sweep. */
export interface SweepResult {
  oidcPayloads: number;
  dpopProofs: number;
  /** Single-use records of federated client assertions (storage/federated_assertions.ts). */
  federatedAssertions: number;
}

const DEFAULT_GRACE_MS = 10 * 60 * 1000;
const DEFAULT_BATCH_SIZE = 1000;

/**
 * Deletes, in bounded batches, `oidc_payloads` rows expired for longer than `graceMs` and expired
 * `dpop_proofs` and `federated_assertions` rows. Lookups already ignore expired rows; this only keeps the tables small.
 */
export async function sweepExpired(
  knex: Knex,
  options: { graceMs?: number; batchSize?: number } = {},
): Promise<SweepResult> {
  const graceSeconds = (options.graceMs ?? DEFAULT_GRACE_MS) / 1000;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const payloads = await knex.raw(
    `delete from oidc_payloads where (model, id_hash) in (
       select model, id_hash from oidc_payloads
       where expires_at < now() - make_interval(secs => ?::double precision)
       limit ?)
     returning 1`,
    [graceSeconds, batchSize],
  );
  const proofs = await knex.raw(
    `delete from dpop_proofs where key_hash in (
       select key_hash from dpop_proofs where expires_at < now() limit ?)
     returning 1`,
    [batchSize],
  );
  const assertions = await knex.raw(
    `delete from federated_assertions where key_hash in (
       select key_hash from federated_assertions where expires_at < now() limit ?)
     returning 1`,
    [batchSize],
  );
  return { oidcPayloads: rowsOf(payloads).length, dpopProofs: rowsOf(proofs).length, federatedAssertions: rowsOf(assertions).length };
}

/**
 * Runs `sweepExpired` every `intervalMs` (never two at once; the timer does not keep the process
 * alive). `stop()` cancels the timer and waits for a sweep in progress, so the caller can then
 * close the database safely.
 */
export function startExpirySweeper(knex: Knex, options: ExpirySweeperOptions): { stop(): Promise<void> } {
  const onError = options.onError ?? ((error: unknown) => process.emitWarning(`tether: expiry sweep failed: ${String(error)}`));
  let running: Promise<void> | undefined;
  const sweepOnce = (): void => {
    if (running !== undefined) return;
    running = sweepExpired(knex, options)
      .then(() => undefined, onError)
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(sweepOnce, options.intervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}

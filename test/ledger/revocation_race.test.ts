import { startTether, type RunningTether } from '../../src/testing/start_tether.js';
import { openTestDatabase } from '../support/database.js';
import { LedgerClient, ledgerConfig } from './ledger_config.js';
import { raceRounds, startSecondInstance, type Cut, type Instance, type RaceSummary } from './race_support.js';

/**
 * Issue 13 §3: after a revocation or a suspension commits, no token derived from it is live, whatever
 * exchanges ran concurrently. Each round: 16 concurrent exchanges of one subject token, the cut
 * committed in the middle of them, then for every child answered 200: its token.exchanged event is
 * committed, introspection says `active: false`, it is refused as a subject token; the ledger counts
 * no live token in the lineage; every refused exchange got the cut's precise OAuth error and left its
 * request.rejected event. On PGlite and PostgreSQL; on PostgreSQL also with two instances (exchanges
 * on one, the cut on the other).
 */

const ROUNDS = { maxRounds: 30, deadlineMs: 90_000 };
const CUTS: Cut[] = ['revoke-subject', 'suspend-exchanging-client', 'suspend-subject-client'];

function expectNoSurvivor(summary: RaceSummary, cut: Cut): void {
  process.stdout.write(`revocation race (${cut}): ${JSON.stringify(summary)}\n`);
  expect(summary.rounds).toBeGreaterThanOrEqual(3);
  expect({
    unrecorded: summary.unrecorded,
    liveByIntrospection: summary.liveByIntrospection,
    exchangeable: summary.exchangeable,
    liveInLedger: summary.liveInLedger,
    imprecise: summary.imprecise,
  }).toEqual({ unrecorded: 0, liveByIntrospection: 0, exchangeable: 0, liveInLedger: 0, imprecise: 0 });
  // Only tokens and the cut's refusal: never a 500, never a 503 (no deadlock, no timeout).
  const refusal = cut === 'suspend-exchanging-client' ? '400 unauthorized_client' : '400 invalid_grant';
  expect(Object.keys(summary.statuses).filter((status) => status !== '200' && status !== refusal)).toEqual([]);
}

describe('one instance: the cut lands in the middle of a burst of exchanges', () => {
  let tether: RunningTether;
  let instance: Instance;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const database = await openTestDatabase();
    tether = await startTether({ config: ledgerConfig(), database });
    instance = { client: new LedgerClient(tether), knex: database.knex };
    close = async () => {
      await tether.close();
      await database.close();
    };
  });

  afterAll(() => close?.());

  test.each(CUTS)('%s: no child survives', async (cut) => {
    expectNoSurvivor(await raceRounds(cut, instance, instance, ROUNDS), cut);
  });
});

const onPostgres = Boolean(process.env.DATABASE_URL);

(onPostgres ? describe : describe.skip)('two instances on one PostgreSQL: exchanges on one, the cut on the other', () => {
  let tether: RunningTether;
  let first: Instance;
  let second: Instance;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const database = await openTestDatabase();
    tether = await startTether({ config: ledgerConfig(), database });
    first = { client: new LedgerClient(tether), knex: database.knex };
    const twin = await startSecondInstance(tether, database.url!);
    second = twin.instance;
    close = async () => {
      await twin.close();
      await tether.close();
      await database.close();
    };
  });

  afterAll(() => close?.());

  test.each(CUTS)('%s: no child survives', async (cut) => {
    expectNoSurvivor(await raceRounds(cut, second, first, ROUNDS), cut);
  });
});

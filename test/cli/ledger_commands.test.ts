import { decodeJwt } from 'jose';
import { CommandError, type CommandContext } from '../../src/cli/inventory_output.js';
import { ledgerTail } from '../../src/cli/ledger_commands.js';
import type { RunningTether } from '../../src/testing/start_tether.js';

import { LedgerClient, ORDERS, startLedgerTether } from '../ledger/ledger_config.js';
import { Captured, contextFor } from './cli_support.js';

let tether: RunningTether;
let client: LedgerClient;
let out: Captured;
let context: CommandContext;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
  out = new Captured();
  context = contextFor(tether, out);
  for (let index = 0; index < 3; index += 1) await client.accessToken('worker', ORDERS);
  await client.token('worker', 'https://nowhere.ledger.test');
});

afterAll(() => tether?.close());

beforeEach(() => out.take());

describe('tether ledger tail', () => {
  test('the newest events, oldest first, one per line', async () => {
    await ledgerTail(context, { lines: 2 });
    const lines = out.take().trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\s+3 {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}token\.issued\s+client=worker\s+resource=https:\/\/orders\.ledger\.test/);
    expect(lines[1]).toMatch(/^\s+4 .* request\.rejected\s+client=worker\s+resource=https:\/\/nowhere\.ledger\.test .*error="invalid_target"/);
  });

  test('--json prints one event object per line; --type and --client filter', async () => {
    await ledgerTail(context, { json: true, type: 'token.issued', client: 'worker' });
    const events = out.take().trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events).toHaveLength(3);
    expect(events[0]).toMatchObject({ id: 1, type: 'token.issued', client_id: 'worker', resource: ORDERS, token_format: 'jwt', binding_method: 'mtls', instance_id: tether.app.instanceId });
  });

  test('an unknown --type is refused', async () => {
    await expect(ledgerTail(context, { type: 'token.minted' })).rejects.toThrow(CommandError);
  });

  test('--follow prints events as they happen, until stopped', async () => {
    const stop = new AbortController();
    const following = ledgerTail(context, { lines: 1, follow: true, json: true, intervalMs: 50, settleMs: 0, signal: stop.signal });
    const token = await client.accessToken('worker', ORDERS);
    const deadline = Date.now() + 60_000;
    while (!out.text.includes(decodeJwt(token).jti!) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    stop.abort();
    await following;
    const events = out.take().trimEnd().split('\n').map((line) => JSON.parse(line) as { id: number; token_id: string });
    expect(events.map((event) => event.id)).toEqual([4, 5]);
    expect(events[1]!.token_id).toBe(decodeJwt(token).jti);
  });
});

import { decodeJwt } from 'jose';
import { clientsList, clientsResume, clientsShow, clientsSuspend } from '../../src/cli/clients_commands.js';
import { CommandError, type CommandContext } from '../../src/cli/inventory_output.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { type TokenResponse } from '../support/tether.js';
import { INVOICES, LedgerClient, ORDERS, REPORTS, startLedgerTether } from '../ledger/ledger_config.js';
import { Captured, contextFor } from './cli_support.js';

let tether: RunningTether;
let client: LedgerClient;
let out: Captured;
let context: CommandContext;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
  out = new Captured();
  context = contextFor(tether, out);
});

afterAll(() => tether?.close());

beforeEach(() => out.take());

/** Token requests until the suspension reaches this instance's early check (no token on the way). */
async function refusedAsSuspended(clientId: string): Promise<TokenResponse> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const response = await client.token(clientId, ORDERS);
    expect(response.body.access_token).toBeUndefined();
    if (response.status !== 503 || Date.now() > deadline) return response;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('tether clients list / show', () => {
  test('every configured client with owner, purpose, resources, active tokens and state', async () => {
    await client.accessToken('worker', ORDERS);
    await client.accessToken('worker', REPORTS);
    await clientsList(context);
    const lines = out.take().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CLIENT\s+OWNER\s+PURPOSE\s+RESOURCES\s+ACTIVE TOKENS\s+STATE$/);
    expect(lines.find((line) => line.startsWith('worker '))).toMatch(
      /^worker\s+team-worker\s+ledger tests: worker\s+https:\/\/orders\.ledger\.test, https:\/\/reports\.ledger\.test, https:\/\/short\.ledger\.test\s+2\s+active$/,
    );
    expect(lines.find((line) => line.startsWith('orders-api '))).toMatch(/https:\/\/invoices\.ledger\.test, https:\/\/vault\.ledger\.test\s+0\s+active$/);
    expect(lines).toHaveLength(1 + tether.config.clients.length);
  });

  test('--json', async () => {
    await clientsList(context, { json: true });
    const clients = JSON.parse(out.take()) as Record<string, unknown>[];
    expect(clients.find((entry) => entry.client_id === 'worker')).toMatchObject({
      owner: 'team-worker', purpose: 'ledger tests: worker', configured: true, suspended: false, active_tokens: 2, total_tokens: 2,
    });
  });

  test('show: permitted resources with scopes, what it introspects, recent events', async () => {
    await clientsShow(context, 'orders-api');
    const text = out.take();
    expect(text).toMatch(/^owner\s+team-orders-api$/m);
    expect(text).toMatch(/^authentication\s+tls_client_auth$/m);
    expect(text).toMatch(/^introspects\s+https:\/\/orders\.ledger\.test, https:\/\/short\.ledger\.test$/m);
    expect(text).toMatch(/^https:\/\/invoices\.ledger\.test\s+token exchange \(for worker\)\s+orders:read$/m);

    await clientsShow(context, 'worker');
    expect(out.take()).toMatch(/token\.issued\s+client=worker\s+resource=https:\/\/orders\.ledger\.test/);
  });

  test('an unknown client is refused', async () => {
    await expect(clientsShow(context, 'nobody')).rejects.toThrow(new CommandError('no client "nobody" in the configuration or the ledger'));
    await expect(clientsSuspend(context, 'nobody')).rejects.toThrow(new CommandError('no client "nobody" in the configuration'));
  });
});

describe('tether clients suspend / resume', () => {
  test('suspend revokes the live tokens (with their exchange lineage) and stops issuance; resume lets it back in', async () => {
    const jwt = await client.accessToken('worker', ORDERS);
    const exchanged = await client.exchange('orders-api', jwt, INVOICES);

    await clientsSuspend(context, 'worker', { reason: 'credential leak' });
    const text = out.take();
    expect(text).toMatch(/^suspended worker: it gets no new tokens$/m);
    expect(text).toMatch(/^revoked 4 live tokens \(with tokens exchanged from them\)$/m);
    expect(text).toContain(decodeJwt(exchanged).jti);

    const refused = await refusedAsSuspended('worker');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('unauthorized_client');
    expect((await client.introspectAs('invoices-api', exchanged)).body).toEqual({ active: false });

    await clientsShow(context, 'worker');
    const shown = out.take();
    expect(shown).toMatch(/^state\s+suspended \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\)$/m);
    expect(shown).toMatch(/^tokens\s+0 active, 3 issued in all$/m);
    expect(shown).toMatch(/client\.suspended\s+client=worker\s+actor=cli:tester@test-host\s+request=cli-test\s+reason="credential leak"/);

    await clientsSuspend(context, 'worker');
    expect(out.take()).toBe('worker was already suspended\nrevoked 0 live tokens (with tokens exchanged from them)\n');

    await clientsResume(context, 'worker', { json: true });
    expect(JSON.parse(out.take())).toEqual({ client_id: 'worker', suspended: false, changed: true });
    expect((await client.token('worker', ORDERS)).status).toBe(200);
    await clientsResume(context, 'worker');
    expect(out.take()).toBe('worker was not suspended\n');
  });
});

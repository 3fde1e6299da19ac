import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { CommandError, type CommandContext } from '../../src/cli/inventory_output.js';
import { tokensList, tokensRevoke, tokensShow } from '../../src/cli/tokens_commands.js';
import type { RunningTether } from '../../src/testing/start_tether.js';

import { ARCHIVE, INVOICES, LedgerClient, ORDERS, REPORTS, startLedgerTether } from '../ledger/ledger_config.js';
import { Captured, contextFor } from './cli_support.js';

/** The token inventory commands, run in-process against a database that real requests went through. */

let tether: RunningTether;
let client: LedgerClient;
let out: Captured;
let context: CommandContext;
let jwt: string;
let opaque: string;
let exchanged: string;
let grandchild: string;
let idleToken: string;

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');
const jtiOf = (token: string) => decodeJwt(token).jti!;

beforeAll(async () => {
  ({ tether, client } = await startLedgerTether());
  out = new Captured();
  context = contextFor(tether, out);
  jwt = await client.accessToken('worker', ORDERS);
  opaque = await client.accessToken('worker', REPORTS);
  exchanged = await client.exchange('orders-api', jwt, INVOICES);
  grandchild = await client.exchange('invoices-api', exchanged, ARCHIVE);
  idleToken = await client.accessToken('idle', ORDERS);
  await client.introspectAs('orders-api', jwt);
});

afterAll(() => tether?.close());

beforeEach(() => out.take());

describe('tether tokens list', () => {
  test('a readable table of every token', async () => {
    await tokensList(context);
    const lines = out.take().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TOKEN ID\s+CLIENT\s+RESOURCE\s+SCOPE\s+BINDING\s+STATE\s+ISSUED\s+EXPIRES\s+LAST USED\s+PARENT$/);
    expect(lines).toHaveLength(6);
    expect(lines.find((line) => line.startsWith(jtiOf(idleToken)))).toMatch(/^\S+\s+idle\s/);
    const jwtLine = lines.find((line) => line.startsWith(jtiOf(jwt)))!;
    expect(jwtLine).toMatch(/worker\s+https:\/\/orders\.ledger\.test\s+orders:read orders:write\s+mtls x5t#S256=\S+\s+active/);
    // The introspection counted as a use.
    expect(jwtLine).not.toMatch(/active\s+\S+ \S+\s+\S+ \S+\s+-\s/);
    expect(lines.find((line) => line.startsWith(sha256(opaque)))).toContain(REPORTS);
  });

  test('--client, --resource and --state filter; --json gives the fields', async () => {
    const mine = await tokensList(context, { client: 'worker', state: 'active', json: true });
    expect(mine.map((token) => token.tokenId).sort()).toEqual([jtiOf(jwt), sha256(opaque)].sort());
    const printed = JSON.parse(out.take()) as Record<string, unknown>[];
    expect(printed.find((token) => token.token_id === jtiOf(jwt))).toMatchObject({
      state: 'active', format: 'jwt', client_id: 'worker', resource: ORDERS, scope: 'orders:read orders:write',
      binding: { method: 'mtls' }, revoked_at: null, parent_token_id: null,
    });

    const invoices = await tokensList(context, { resource: INVOICES, json: true });
    expect(invoices.map((token) => token.tokenId)).toEqual([jtiOf(exchanged)]);
    expect(JSON.parse(out.take())[0]).toMatchObject({ client_id: 'orders-api', parent_token_id: jtiOf(jwt) });

    expect(await tokensList(context, { state: 'revoked' })).toEqual([]);
    expect(out.take()).toBe('no tokens match\n');
  });

  test('an unknown state is refused', async () => {
    await expect(tokensList(context, { state: 'dead' })).rejects.toThrow(new CommandError('--state must be one of active, expired, revoked (got "dead")'));
  });
});

describe('tether tokens show', () => {
  test('fields, binding, lineage and events of a JWT', async () => {
    await tokensShow(context, jtiOf(jwt));
    const text = out.take();
    expect(text).toMatch(new RegExp(`^token id\\s+${jtiOf(jwt)}$`, 'm'));
    expect(text).toMatch(/^state\s+active$/m);
    expect(text).toMatch(/^client\s+worker$/m);
    expect(text).toMatch(/^resource \(aud\)\s+https:\/\/orders\.ledger\.test$/m);
    expect(text).toMatch(/^binding\s+mtls x5t#S256=[\w-]{43}$/m);
    expect(text).toMatch(/^last used\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m);
    expect(text).toMatch(new RegExp(`^child\\s+${jtiOf(exchanged)}\\s+orders-api\\s+${INVOICES}\\s+active$`, 'm'));
    expect(text).toMatch(new RegExp(`^descendant 2\\s+${jtiOf(grandchild)}\\s+invoices-api`, 'm'));
    expect(text).toMatch(/token\.issued\s+client=worker/);
    expect(text).toMatch(/token\.introspected\s+client=worker.*actor=orders-api.*active=true/);
  });

  test('an exchanged token shows its parent; --json has ancestors, descendants and events', async () => {
    await tokensShow(context, jtiOf(exchanged), { json: true });
    const shown = JSON.parse(out.take());
    expect(shown).toMatchObject({ token_id: jtiOf(exchanged), parent_token_id: jtiOf(jwt), client_id: 'orders-api' });
    expect(shown.ancestors.map((token: { token_id: string }) => token.token_id)).toEqual([jtiOf(jwt)]);
    expect(shown.descendants).toMatchObject([{ token_id: jtiOf(grandchild), depth: 1 }]);
    expect(shown.events.map((event: { type: string }) => event.type)).toEqual(['token.exchanged']);
  });

  test('an opaque token is found by its ledger id, or by the token itself (never printed back)', async () => {
    await tokensShow(context, sha256(opaque));
    expect(out.take()).toMatch(/^format\s+opaque/m);
    await tokensShow(context, opaque);
    const text = out.take();
    expect(text).toContain(sha256(opaque));
    expect(text).not.toContain(opaque);
  });

  test('an unknown id is refused', async () => {
    await expect(tokensShow(context, 'nope')).rejects.toThrow(new CommandError('no token with id "nope" in the ledger'));
  });
});

describe('tether tokens revoke', () => {
  test('needs exactly one selection', async () => {
    const message = 'name exactly one of: a token id, --client <id>, --resource <uri>';
    await expect(tokensRevoke(context, undefined)).rejects.toThrow(new CommandError(message));
    await expect(tokensRevoke(context, jtiOf(jwt), { client: 'worker' })).rejects.toThrow(new CommandError(message));
  });

  test('--client revokes every live token of the client and everything exchanged from them; verifiers see it', async () => {
    const revoked = await tokensRevoke(context, undefined, { client: 'worker', reason: 'laptop stolen' });
    expect(revoked.map((token) => token.tokenId).sort()).toEqual([jtiOf(jwt), sha256(opaque), jtiOf(exchanged), jtiOf(grandchild)].sort());
    const text = out.take();
    expect(text).toMatch(/^revoked 4 tokens \(every live token of client worker, with tokens exchanged from them\)$/m);
    expect(text).toMatch(new RegExp(`^${jtiOf(grandchild)}\\s+invoices-api\\s+${ARCHIVE}\\s+exchanged from `, 'm'));

    const event = await tether.database.knex('ledger_events').where({ type: 'token.revoked', token_id: jtiOf(jwt) }).first();
    expect(event).toMatchObject({ actor: 'cli:tester@test-host', request_id: 'cli-test', details: { reason: 'laptop stolen' } });
    expect((await client.introspectAs('invoices-api', exchanged)).body).toEqual({ active: false });
    expect(await tokensList(context, { client: 'worker', state: 'active' })).toEqual([]);
    expect(await tokensList(context, { client: 'idle', state: 'active' })).toHaveLength(1);

    out.take();
    await tokensRevoke(context, undefined, { client: 'worker' });
    expect(out.take()).toBe('nothing to revoke: client worker has no live tokens\n');
    await tokensRevoke(context, jtiOf(jwt));
    expect(out.take()).toBe(`nothing to revoke: token ${jtiOf(jwt)} is already revoked or expired\n`);
  });

  test('one token by id, and --resource in bulk', async () => {
    const first = await client.accessToken('idle', ORDERS);
    const revoked = await tokensRevoke(context, jtiOf(first), { json: true });
    expect(revoked).toEqual([{ tokenId: jtiOf(first), clientId: 'idle', resource: ORDERS, parentTokenId: undefined, cascadeFrom: undefined }]);
    expect(JSON.parse(out.take())).toEqual([{ token_id: jtiOf(first), client_id: 'idle', resource: ORDERS, cascade_from: null }]);

    const byResource = await tokensRevoke(context, undefined, { resource: ORDERS });
    expect(byResource.map((token) => token.tokenId)).toEqual([jtiOf(idleToken)]);
    expect(await tokensList(context, { state: 'active' })).toEqual([]);
  });
});

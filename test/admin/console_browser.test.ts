import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Locator } from 'playwright-core';
import { fetch } from 'undici';
import { DEV_CONFIG } from '../../src/config/dev_defaults.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { basicAuth, postForm, startTestTether } from '../support/tether.js';

// The admin console in a real browser (headless Chromium, Debian's package) against a running
// Tether: log in with the dev credential, find a token, open its lineage, revoke it, see it revoked
// in the inventory and `active: false` at introspection. The screenshot is kept under artifacts/.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const CHROMIUM = '/usr/bin/chromium';
const DEV_SECRET = 'console-test-dev-credential-0123456789';
const ORDERS = 'https://orders.example.test';
const PAYMENTS = 'https://payments.example.test';
const REPORTING_SECRET = 'dev-only-secret-reporting-cli-0001';

let tether: RunningTether;
let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  // The development configuration, with an introspector for the orders API (so that `active` means something).
  const config = structuredClone(DEV_CONFIG) as Omit<typeof DEV_CONFIG, 'resources'> & { resources: Record<string, unknown>[] };
  config.resources = config.resources.map((resource) => (resource.uri === ORDERS ? { ...resource, introspectors: ['reporting-cli'] } : resource));
  tether = await startTestTether({ config, adminDevSecret: DEV_SECRET, http: true });
  profile = await mkdtemp(path.join(os.tmpdir(), 'tether-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await context?.close();
  await tether?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function introspect(token: string): Promise<Record<string, unknown>> {
  const { status, body } = await postForm(tether.introspectionEndpoint, { token }, {
    dispatcher: tether.dispatcherFor(), headers: { authorization: basicAuth('reporting-cli', REPORTING_SECRET) },
  });
  expect(status).toBe(200);
  return body;
}

test('log in, find a token, open its lineage, revoke it: revoked in the inventory, inactive at introspection', async () => {
  const parent = await tether.token({ client: 'orders-worker', resource: PAYMENTS, scope: 'payments:charge orders:read' });
  const child = await tether.exchange({ client: 'payments-api', subjectToken: parent, resource: ORDERS, scope: 'orders:read' });
  const parentId = parent.claims!.jti!;
  const childId = child.claims!.jti!;
  expect(await introspect(child.accessToken)).toMatchObject({ active: true });

  const page = await context.newPage();
  await page.goto(`${tether.httpOrigin}/admin`);
  expect(page.url()).toBe(`${tether.httpOrigin}/admin/`);

  // A wrong credential is refused; the right one, typed and submitted from the keyboard, logs in.
  const credential = page.getByLabel('Admin credential');
  await credential.fill('not-the-credential');
  await credential.press('Enter');
  await textOf(page.locator('#login-error'), 'The credential was refused.');
  await credential.fill(DEV_SECRET);
  await credential.press('Enter');
  await page.getByRole('heading', { name: 'Tokens' }).waitFor();

  // Find the token: filter the inventory by client.
  await page.getByLabel('Client').fill('orders-worker');
  await page.getByLabel('Client').press('Enter');
  await page.waitForURL(/#\/tokens\?client=orders-worker$/);
  const link = page.getByRole('link', { name: parentId });
  // The unfiltered list already shows the parent: wait for the filtered answer to replace it.
  await page.waitForFunction("document.querySelectorAll('tbody tr').length === 1");
  await link.waitFor();
  expect(await page.locator('tbody tr').count()).toBe(1);
  await link.focus();
  await page.keyboard.press('Enter');

  // Its page: claims, binding, and the lineage graph with the exchanged token below it.
  await page.getByRole('heading', { name: `Token ${parentId}` }).waitFor();
  expect(JSON.parse(await page.getByLabel('Decoded claims').textContent() ?? '')).toMatchObject({ client_id: 'orders-worker', aud: PAYMENTS, jti: parentId, cnf: { 'x5t#S256': expect.any(String) } });
  const nodes = page.locator('svg.lineage a');
  expect(await nodes.count()).toBe(2);
  expect(await nodes.nth(1).getAttribute('aria-label')).toBe(`token ${childId}: payments-api for ${ORDERS}, active`);
  expect(await page.locator('svg.lineage line').count()).toBe(1);
  await mkdir(path.join(ROOT, 'artifacts'), { recursive: true });
  await page.screenshot({ path: path.join(ROOT, 'artifacts', 'console-lineage.png'), fullPage: true });

  // Revoke, confirmed in the dialog (Confirm has the focus; Enter confirms).
  await page.getByRole('button', { name: 'Revoke…' }).click();
  const dialog = page.getByRole('dialog');
  await textOf(dialog, `Revoke token ${parentId} and 1 token(s) exchanged from it?`, 'contains');
  await page.keyboard.press('Enter');
  await textOf(page.locator('#token-state'), 'revoked');
  expect(await nodes.nth(1).getAttribute('aria-label')).toBe(`token ${childId}: payments-api for ${ORDERS}, revoked`);

  // The inventory shows both revoked; introspection says inactive.
  await page.getByRole('link', { name: 'Tokens', exact: true }).click();
  await page.getByLabel('State').selectOption('revoked');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/state=revoked/);
  await page.getByRole('link', { name: childId }).waitFor();
  const rows = await page.locator('tbody tr').allTextContents();
  expect(rows.filter((row) => row.includes('revoked')).length).toBe(2);
  expect(await introspect(child.accessToken)).toEqual({ active: false });
  expect(await introspect(parent.accessToken)).toEqual({ active: false });

  // Recorded: the revocation by the console's caller.
  const revoked = await tether.database.knex('ledger_events').where({ type: 'token.revoked', token_id: parentId }).first();
  expect(revoked).toMatchObject({ actor: 'admin:dev-credential' });
  await page.close();
});

test('clients: suspend and resume with confirmation; the ledger view shows new events live', async () => {
  const page = await context.newPage();
  await page.goto(`${tether.httpOrigin}/admin/#/clients`);
  // The credential is kept per tab (sessionStorage): a new tab logs in again.
  await page.getByLabel('Admin credential').fill(DEV_SECRET);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Clients' }).waitFor();

  const row = page.locator('tr', { has: page.getByRole('link', { name: 'reporting-cli', exact: true }) });
  await page.getByRole('button', { name: 'Suspend reporting-cli…' }).click();
  await textOf(page.getByRole('dialog'), 'Suspend reporting-cli? It gets no new tokens', 'contains');
  // Cancel first: nothing changes.
  await page.getByRole('button', { name: 'Cancel' }).click();
  await textOf(row.locator('td').nth(5), 'active');
  await page.getByRole('button', { name: 'Suspend reporting-cli…' }).click();
  await page.getByRole('button', { name: 'Suspend', exact: true }).click();
  await textOf(row.locator('td').nth(5), 'suspended');
  expect(await tether.database.knex('client_states').where({ client_id: 'reporting-cli' }).first()).toMatchObject({ suspended: true });
  await page.getByRole('button', { name: 'Resume reporting-cli…' }).click();
  await page.getByRole('button', { name: 'Resume', exact: true }).click();
  await textOf(row.locator('td').nth(5), 'active');

  await page.getByRole('link', { name: 'Ledger', exact: true }).click();
  await page.getByRole('heading', { name: 'Ledger (live)' }).waitFor();
  const issued = await tether.token({ client: 'orders-worker', resource: ORDERS, scope: 'orders:read' });
  // Streamed once settled (about a second), at the latest in 15 s.
  await page.getByRole('link', { name: issued.claims!.jti! }).waitFor({ timeout: 15_000 });
  await page.close();
});

test('the console files come with a strict Content-Security-Policy; the API behind them still needs the credential', async () => {
  const page = await fetch(`${tether.httpOrigin}/admin/`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-security-policy')).toBe("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  expect(page.headers.get('x-content-type-options')).toBe('nosniff');
  expect((await fetch(`${tether.httpOrigin}/admin/api/tokens`)).status).toBe(401);
  expect((await fetch(`${tether.httpOrigin}/admin/other.js`)).status).toBe(404);
});

/** Waits (bounded) until the locator's text is, or contains, `text`: the page updates after its fetches. */
async function textOf(locator: Locator, text: string, match: 'is' | 'contains' = 'is', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = (await locator.count()) > 0 ? await locator.first().textContent() ?? '' : '';
    if (match === 'is' ? current === text : current.includes(text)) return;
    if (Date.now() > deadline) throw new Error(`expected text ${match} ${JSON.stringify(text)}, got ${JSON.stringify(current)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

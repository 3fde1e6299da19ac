// The probe against APIs that answer in known ways: it judges each answer, and it sends nothing
// anywhere but the URL it was given.
import { formatProbeJson, formatProbeTable, type ProbeReport, type RunningTether } from '../../src/testing/index.js';
import { startTestTether } from '../support/tether.js';
import { startEchoServer, type EchoServer } from './echo_server.js';
import { ORDERS, harnessConfig } from './harness_config.js';

let tether: RunningTether;
let api: EchoServer;
let elsewhere: EchoServer;

beforeAll(async () => {
  tether = await startTestTether({ config: harnessConfig() });
  [api, elsewhere] = await Promise.all([startEchoServer(tether.pki.server), startEchoServer(tether.pki.server)]);
});

afterAll(async () => {
  await Promise.all([api?.close(), elsewhere?.close()]);
  await tether?.close();
});

beforeEach(() => {
  api.requests.length = 0;
  elsewhere.requests.length = 0;
});

const probe = (options: { client?: string; only?: string[]; skip?: string[]; url?: string } = {}) => tether.probe({
  url: options.url ?? `${api.origin}/orders?status=open`, client: options.client ?? 'worker', resource: ORDERS, scope: 'orders:read',
  only: options.only, skip: options.skip,
});
const verdicts = (report: ProbeReport) => Object.fromEntries(report.results.map((result) => [result.id, result.verdict]));

describe('an API that accepts every request', () => {
  test('every check but the control fails as ACCEPTED; requests went to the given URL only', async () => {
    api.handle((_request, res) => res.writeHead(200).end('{}'));
    const report = await probe();
    expect(report.ok).toBe(false);
    expect(report.results[0]).toMatchObject({ id: 'valid', verdict: 'pass', answered: '200' });
    for (const result of report.results.slice(1)) expect(result).toMatchObject({ verdict: 'fail', note: 'ACCEPTED', answered: '200' });
    expect(report.failed).toBe(report.results.length - 1);
    expect(api.requests.length).toBe(report.results.length);
    expect(new Set(api.requests.map((request) => `${request.method} ${request.url}`))).toEqual(new Set(['GET /orders?status=open']));
  });

  test('DPoP: the replay check sends the same request twice and judges the second', async () => {
    api.handle((_request, res) => res.writeHead(200).end('{}'));
    const report = await probe({ client: 'dpop-worker', only: ['proof-replayed'] });
    expect(api.requests).toHaveLength(2);
    expect(api.requests[0]!.headers.dpop).toBe(api.requests[1]!.headers.dpop);
    expect(report.results.find((result) => result.id === 'proof-replayed')).toMatchObject({ verdict: 'fail', note: 'ACCEPTED; first use answered 200' });
  });
});

describe('judging', () => {
  test('a redirect is not followed: nothing reaches the other server, and a 307 is not a refusal', async () => {
    api.handle((_request, res) => res.writeHead(307, { location: `${elsewhere.origin}/steal` }).end());
    const report = await probe({ only: ['valid', 'wrong-aud'] });
    expect(elsewhere.requests).toEqual([]);
    expect(verdicts(report)).toMatchObject({ valid: 'fail', 'wrong-aud': 'fail' });
  });

  test('the right status without an error code passes with a note; a wrong error code fails', async () => {
    api.handle((_request, res) => res.writeHead(401).end());
    const bare = await probe({ only: ['wrong-aud'] });
    expect(bare.results.find((result) => result.id === 'wrong-aud')).toMatchObject({ verdict: 'pass', answered: '401', note: 'no error code given' });

    api.handle((_request, res) => res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_request"' }).end());
    const wrongCode = await probe({ only: ['wrong-aud'] });
    expect(wrongCode.results.find((result) => result.id === 'wrong-aud')).toMatchObject({ verdict: 'fail', answered: '401 invalid_request', note: 'expected error invalid_token' });

    api.handle((_request, res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":"insufficient_scope"}'));
    const fromBody = await probe({ only: ['scope-missing', 'expired'] });
    expect(verdicts(fromBody)).toMatchObject({ 'scope-missing': 'pass', expired: 'fail' });
  });

  test('only / skip select checks; the others are reported as skipped', async () => {
    api.handle((_request, res) => res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end());
    const report = await probe({ only: ['expired', 'revoked'], skip: ['revoked'] });
    expect(verdicts(report)).toMatchObject({ valid: 'skip', expired: 'pass', revoked: 'skip' });
    expect(report.results.find((result) => result.id === 'revoked')!.note).toBe('skipped on request');
    expect(report).toMatchObject({ passed: 1, failed: 0, ok: true });
  });

  test('an API that cannot be reached: every check is an error and the report is not ok', async () => {
    const report = await probe({ url: 'https://localhost:1/orders', only: ['valid', 'expired'] });
    expect(verdicts(report)).toMatchObject({ valid: 'error', expired: 'error' });
    expect(report.ok).toBe(false);
  });
});

describe('the report', () => {
  test('table: one line per check, a summary naming the failures, long notes below the table', async () => {
    api.handle((_request, res) => res.writeHead(200).end('{}'));
    const report = await probe({ only: ['valid', 'expired', 'wrong-iss'] });
    const table = formatProbeTable(report);
    const lines = table.split('\n');
    expect(lines[0]).toBe(`GET ${api.origin}/orders?status=open`);
    expect(lines[2]).toMatch(/^CHECK +SENT +EXPECTED +ANSWERED +RESULT$/);
    expect(table).toMatch(/^expired +exp 600 s ago .* +401 invalid_token +200 +FAIL \(ACCEPTED\)$/m);
    expect(table).toMatch(/^1 passed, 2 failed, 13 skipped — failed: expired, wrong-iss$/m);
    expect(JSON.parse(formatProbeJson(report))).toEqual(JSON.parse(JSON.stringify(report)));
  });

  test('a long note is printed once below the table, and referred to by number', () => {
    const reason = 'Tether\'s signing key could not be read: the database directory is in use by another process';
    const skipped = { breaks: 'aud', sent: '-', expected: '401 invalid_token', answered: '-', verdict: 'skip' as const, note: reason };
    const table = formatProbeTable({
      url: 'https://api.test/orders', method: 'GET', passed: 0, failed: 0, skipped: 2, unrun: 2, ok: true,
      results: [{ id: 'wrong-aud', ...skipped }, { id: 'expired', ...skipped }],
    });
    expect(table.match(/SKIP \(note 1\)/g)).toHaveLength(2);
    expect(table.endsWith(`note 1: ${reason}`)).toBe(true);
  });
});

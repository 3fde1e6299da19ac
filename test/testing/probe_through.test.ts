// The gateway probe's report: who enforces each check, as a table and as JSON, and the command
// line's --upstream options. (Run against real nginx in test/http/forward_auth_nginx.test.ts.)
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { PROBE_EXIT, registerProbeCommand } from '../../src/cli/probe_command.js';
import { formatThroughJson, formatThroughTable, type CheckResult, type ProbeReport, type ThroughReport } from '../../src/testing/index.js';

const line = (id: string, verdict: CheckResult['verdict'], answered: string, extra: Partial<CheckResult> = {}): CheckResult => ({
  id, breaks: 'aud', sent: '-', expected: id === 'valid' ? '2xx' : '401 invalid_token', answered, verdict, ...extra,
});
const report = (url: string, results: CheckResult[]): ProbeReport => ({
  url, method: 'GET', results, passed: results.filter((r) => r.verdict === 'pass').length, failed: results.filter((r) => r.verdict === 'fail').length, skipped: 0, unrun: 0,
  ok: results.every((r) => r.verdict !== 'fail'),
});

function throughReport(): ThroughReport {
  const gateway = report('https://api.example/orders', [
    line('valid', 'pass', '200'),
    line('wrong-aud', 'pass', '401 invalid_token', { refusedByGateway: true }),
    line('expired', 'pass', '401 invalid_token', { refusedByGateway: true }),
    line('wrong-iss', 'pass', '401 invalid_token'),
    line('revoked', 'fail', '200', { note: 'ACCEPTED' }),
  ]);
  const direct = report('http://10.0.0.5:8080/orders', [
    line('valid', 'pass', '200'),
    line('wrong-aud', 'fail', '200', { note: 'ACCEPTED' }),
    line('expired', 'pass', '401 invalid_token'),
    line('wrong-iss', 'pass', '401 invalid_token'),
    line('revoked', 'fail', '200', { note: 'ACCEPTED' }),
  ]);
  const enforcedBy = ['control', 'gateway', 'both', 'api', 'neither'] as const;
  return {
    url: gateway.url, upstreamUrl: direct.url, method: 'GET', gatewayReport: gateway, directReport: direct, ok: false, unrun: 0,
    results: gateway.results.map((result, index) => ({ id: result.id, breaks: result.breaks, sent: result.sent, expected: result.expected, gateway: result, direct: direct.results[index]!, enforcedBy: enforcedBy[index]! })),
    enforcement: { gateway: ['wrong-aud'], api: ['wrong-iss'], both: ['expired'], neither: ['revoked'], unknown: [] },
  };
}

test('the table: both answers per check, who enforces it, the verdict through the gateway, then who enforces what', () => {
  const table = formatThroughTable(throughReport());
  const lines = table.split('\n');
  expect(lines[0]).toBe('GET https://api.example/orders (gateway) and http://10.0.0.5:8080/orders (direct)');
  expect(lines[2]).toMatch(/^CHECK +EXPECTED +GATEWAY +DIRECT +ENFORCED BY +RESULT$/);
  expect(table).toMatch(/^wrong-aud +401 invalid_token +401 invalid_token \(gateway\) +200 +gateway +PASS$/m);
  expect(table).toMatch(/^revoked +401 invalid_token +200 +200 +neither +FAIL \(ACCEPTED\)$/m);
  expect(lines.slice(-5)).toEqual([
    'through the gateway: 4 passed, 1 failed, 0 skipped — failed: revoked',
    'enforced by the gateway only (the API accepts them directly): wrong-aud',
    'enforced by the API itself: wrong-iss',
    'enforced by both: expired',
    'enforced by neither: revoked',
  ]);
});

test('JSON (snake_case): ok, enforcement and per-check gateway/direct results, without the two raw reports', () => {
  const json = JSON.parse(formatThroughJson(throughReport())) as Record<string, unknown>;
  expect(Object.keys(json).sort()).toEqual(['enforcement', 'method', 'ok', 'results', 'unrun', 'upstream_url', 'url']);
  expect(json.enforcement).toEqual({ gateway: ['wrong-aud'], api: ['wrong-iss'], both: ['expired'], neither: ['revoked'], unknown: [] });
  expect((json.results as Record<string, unknown>[])[1]).toMatchObject({ id: 'wrong-aud', enforced_by: 'gateway', gateway: { refused_by_gateway: true, verdict: 'pass' }, direct: { verdict: 'fail', note: 'ACCEPTED' } });
});

class Captured extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

test.each([
  [['--upstream-ca', '/nonexistent.pem'], 'tether probe: --upstream-ca goes with --upstream\n'],
  [['--upstream', 'not a url'], 'tether probe: --upstream "not a url": expected an absolute URL\n'],
])('%j → unusable (exit 2) before anything is contacted', async (args, message) => {
  const program = new Command().exitOverride();
  const out = new Captured();
  const err = new Captured();
  registerProbeCommand(program, out, err);
  process.exitCode = undefined;
  await program.parseAsync(['node', 'tether', 'probe', 'https://api.example/orders', '--client', 'worker', '--resource', 'https://orders.example', '--issuer', 'https://tether.invalid', '--client-secret', 'x', ...args]);
  expect(err.text).toBe(message);
  expect(process.exitCode).toBe(PROBE_EXIT.unusable);
  process.exitCode = undefined;
});

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, fetch } from 'undici';
import { basicAuth, postForm } from '../support/tether.js';
import { parseExposition, valueOf } from './scrape.js';
import { freePort } from '../support/nginx.js';
import { waitFor } from '../support/tether_process.js';

/**
 * `tether dev` as a process: its log stream (stderr, as docs/configuration.md says) carries only JSON
 * lines, from the start through requests to the SIGTERM stop; stdout carries the banner.
 */

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

let workdir: string;

beforeAll(async () => {
  workdir = await mkdtemp(path.join(os.tmpdir(), 'tether-logs-'));
});

afterAll(async () => {
  await rm(workdir, { recursive: true, force: true });
});

test('tether dev: every line on stderr is JSON (requests, refusals, the SIGTERM stop); the banner on stdout names /metrics', async () => {
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const env: Record<string, string | undefined> = {
    ...process.env, TETHER_LOG_LEVEL: 'debug', TETHER_ISSUER: `https://localhost:${httpsPort}`, TETHER_HTTPS_PORT: String(httpsPort), TETHER_HTTP_PORT: String(httpPort),
  };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'main.ts'), 'dev'], { cwd: workdir, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(() => stdout.includes('curl') || child.exitCode !== null, 'the dev banner');
    expect(stdout).toContain(`metrics    http://localhost:${httpPort}/metrics  (Prometheus)`);

    const pki = path.join(workdir, '.tether', 'pki');
    const agent = new Agent({
      connect: {
        ca: await readFile(path.join(pki, 'ca.pem'), 'utf8'),
        cert: await readFile(path.join(pki, 'clients', 'orders-worker.pem'), 'utf8'),
        key: await readFile(path.join(pki, 'clients', 'orders-worker.key.pem'), 'utf8'),
      },
    });
    const token = `https://localhost:${httpsPort}/token`;
    const issued = await postForm(token, { grant_type: 'client_credentials', client_id: 'orders-worker', resource: 'https://orders.example.test' }, { dispatcher: agent });
    const refused = await postForm(token, { grant_type: 'client_credentials', resource: 'https://reports.example.test' }, {
      dispatcher: agent, headers: { authorization: basicAuth('reporting-cli', 'not-the-secret') },
    });
    await agent.close();
    expect([issued.status, refused.status]).toEqual([200, 401]);
    const scraped = parseExposition(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text());
    expect(valueOf(scraped, 'tether_tokens_issued_total', { grant: 'client_credentials', client: 'orders-worker', resource: 'https://orders.example.test' })).toBe(1);
    expect(valueOf(scraped, 'tether_token_requests_refused_total', { grant: 'client_credentials', client: 'reporting-cli', resource: 'https://reports.example.test', error: 'invalid_client' })).toBe(1);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }

  const lines = stderr.split('\n').filter((line) => line !== '');
  const notJson = lines.filter((line) => {
    try {
      return typeof JSON.parse(line) !== 'object';
    } catch {
      return true;
    }
  });
  expect(notJson).toEqual([]);
  const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(parsed.every((line) => line.service === 'tether' && typeof line.level === 'number' && typeof line.time === 'number')).toBe(true);
  const requests = parsed.filter((line) => line.msg === 'request');
  expect(requests.map((line) => [line.path, line.status, line.clientId, line.error])).toEqual([
    ['/token', 200, 'orders-worker', undefined],
    ['/token', 401, 'reporting-cli', 'invalid_client'],
    ['/metrics', 200, undefined, undefined],
  ]);
  expect(parsed).toContainEqual(expect.objectContaining({ level: 30, signal: 'SIGTERM', msg: 'SIGTERM: finishing in-flight requests' }));
  expect(parsed.at(-1)).toMatchObject({ level: 30, signal: 'SIGTERM', msg: 'stopped' });
  expect(stderr).not.toContain('dev-only-secret-reporting-cli');
});

test('tether dev with metrics on a listener of their own: the banner names it, it serves only /metrics, the token listeners do not', async () => {
  const [httpsPort, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const dir = await mkdtemp(path.join(workdir, 'own-'));
  await writeFile(path.join(dir, 'tether.config.yaml'), [
    `issuer: https://localhost:${httpsPort}`,
    `listeners: { https: { port: ${httpsPort} }, http: { port: ${httpPort} } }`,
    `metrics: { listener: { host: 127.0.0.1, port: ${metricsPort} }, path: /internal/metrics }`,
    'resources: [{ uri: "https://legacy.example.test", scopes: [read], allowBearer: true }]',
    'clients: [{ id: legacy, owner: o, purpose: p, binding: none, auth: { method: client_secret_basic, secret: "legacy-secret-0123456789abcdef" }, resources: { "https://legacy.example.test": [read] } }]',
    '',
  ].join('\n'));
  const env: Record<string, string | undefined> = { ...process.env, TETHER_LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'src', 'main.ts'), 'dev'], { cwd: dir, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(() => stdout.includes('health') || child.exitCode !== null, 'the dev banner');
    const metricsUrl = `http://127.0.0.1:${metricsPort}/internal/metrics`;
    expect(stdout).toContain(`metrics    ${metricsUrl}  (Prometheus)`);
    const agent = new Agent({ connect: { ca: await readFile(path.join(dir, '.tether', 'pki', 'ca.pem'), 'utf8') } });
    const issued = await postForm(`https://localhost:${httpsPort}/token`, { grant_type: 'client_credentials', resource: 'https://legacy.example.test' }, {
      dispatcher: agent, headers: { authorization: basicAuth('legacy', 'legacy-secret-0123456789abcdef') },
    });
    expect(issued.status).toBe(200);
    expect((await fetch(`https://localhost:${httpsPort}/internal/metrics`, { dispatcher: agent })).status).toBe(404);
    await agent.close();
    expect((await fetch(`http://127.0.0.1:${httpPort}/internal/metrics`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(404);
    const scraped = parseExposition(await (await fetch(metricsUrl)).text());
    expect(valueOf(scraped, 'tether_tokens_issued_total', { grant: 'client_credentials', client: 'legacy', resource: 'https://legacy.example.test' })).toBe(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  // The metrics listener closed with the others.
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(metricsPort, '127.0.0.1', resolve));
  await new Promise((resolve) => probe.close(resolve));
  expect(stderr.split('\n').filter((line) => line !== '').every((line) => line.startsWith('{'))).toBe(true);
});

test('process warnings (a library deprecation, process.emitWarning) become JSON lines of the logger', async () => {
  const script = [
    `import { createLogger } from ${JSON.stringify(path.join(ROOT, 'src', 'cli', 'logger.ts'))};`,
    `import { routeProcessWarnings } from ${JSON.stringify(path.join(ROOT, 'src', 'observability', 'library_logs.ts'))};`,
    'routeProcessWarnings(createLogger("info"));',
    'process.emitWarning("old API used", { type: "DeprecationWarning", code: "LIB001" });',
    'process.emitWarning("could not reach postgres://u:hunter2@db/x");',
  ].join('\n');
  const file = path.join(workdir, 'warnings.mts');
  await writeFile(file, script);
  const child = spawn(process.execPath, ['--import', TSX, file], { cwd: workdir, env: { ...process.env, NODE_OPTIONS: '' } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  expect(await new Promise((resolve) => child.on('close', resolve))).toBe(0);
  const lines = stderr.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(lines).toEqual([
    expect.objectContaining({ level: 40, component: 'process', warning: 'DeprecationWarning', code: 'LIB001', msg: 'old API used' }),
    expect.objectContaining({ level: 40, component: 'process', warning: 'Warning', msg: 'could not reach postgres://u:***@db/x' }),
  ]);
});

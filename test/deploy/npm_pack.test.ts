import { execFile, execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

// `npm pack` makes the tarball `npm publish` would upload; installed into a scratch project that
// cannot see this repository, its public entry points and its `tether` command work.
//
// It compiles and installs (a minute or two), so it runs once per CI run: in the PGlite pass.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const STEP_TIMEOUT_MS = 10 * 60_000;
const run = promisify(execFile);

/** What a fresh clone of this checkout holds: tracked files and new files git does not ignore. */
async function copyCheckout(destination: string): Promise<void> {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  for (const file of listed.split('\0').filter(Boolean)) {
    const info = await stat(path.join(ROOT, file)).catch(() => undefined);
    if (!info?.isFile()) continue;
    await mkdir(path.dirname(path.join(destination, file)), { recursive: true });
    await copyFile(path.join(ROOT, file), path.join(destination, file));
  }
}

// The consumer: imports only the package's public entry points, proves it cannot read the
// repository (the permission model is on), then gets a real token from the installed harness and
// verifies it with the installed verifier, bound to the client's certificate.
const CONSUMER = `
import { readFileSync } from 'node:fs';
import { startTether } from 'tether-oauth/testing';
import { createVerifier } from 'tether-oauth/resource-server';

const repositoryFile = process.argv[2];
let repository;
try {
  readFileSync(repositoryFile);
  repository = 'readable';
} catch (error) {
  repository = error.code;
}
const resolved = [import.meta.resolve('tether-oauth/testing'), import.meta.resolve('tether-oauth/resource-server')];
const tether = await startTether();
try {
  const token = await tether.token({ client: 'orders-worker', resource: 'https://orders.example.test', scope: 'orders:read' });
  const verifier = createVerifier({ issuer: tether.issuer, audience: 'https://orders.example.test', jwks: tether.jwks });
  const request = { method: 'GET', url: 'https://orders.example.test/orders', headers: { authorization: 'Bearer ' + token.accessToken }, requiredScopes: ['orders:read'] };
  const claims = await verifier.verify({ ...request, clientCertificate: tether.pki.clients['orders-worker'].certificatePem });
  const otherCertificate = await verifier.verify({ ...request, clientCertificate: tether.pki.server.certificatePem }).then(() => 'accepted', (error) => error.code);
  console.log(JSON.stringify({
    repository, resolved, iss: claims.iss === tether.issuer, aud: claims.aud, client_id: claims.client_id,
    bound: claims.cnf['x5t#S256'] === tether.pki.clients['orders-worker'].thumbprint, otherCertificate,
  }));
} finally {
  await tether.close();
}
`;

describe('npm pack', () => {
  test('makes an installable tarball of the compiled package: entry points and the tether command work in a project without the repository', async () => {
    if (process.env.DATABASE_URL) {
      console.log('npm pack: runs in the PGlite pass (no DATABASE_URL), once per CI run; nothing to do on PostgreSQL');
      return;
    }
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'tether-pack-'));
    try {
      const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { cwd: ROOT, encoding: 'utf8' }).trim();
      // The machine's environment (its registry, proxy and CA settings: NODE_EXTRA_CA_CERTS may be what
      // lets npm reach the registry at all), without what `npm test` added about this repository.
      const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|INIT_CWD$)/i.test(name)));
      const env = {
        ...inherited,
        PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
        HOME: os.homedir(),
        npm_config_cache: npmCache,
        npm_config_update_notifier: 'false',
      };

      // 1. Pack a copy of the checkout (prepack builds; the repository's own dist/ is left alone).
      const source = path.join(scratch, 'source');
      await copyCheckout(source);
      await symlink(path.join(ROOT, 'node_modules'), path.join(source, 'node_modules'), 'dir');
      const packed = path.join(scratch, 'packed');
      await mkdir(packed);
      const pack = await run('npm', ['pack', '--pack-destination', packed, '--json'], { cwd: source, env, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
      const [report] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { name: string; version: string; filename: string; files: { path: string }[] }[];
      const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
      expect({ name: report!.name, version: report!.version }).toEqual({ name: 'tether-oauth', version: manifest.version });
      const files = report!.files.map((file) => file.path).sort();
      expect(files).toEqual(expect.arrayContaining([
        'package.json', 'README.md', 'bin/tether.js', 'dist/src/main.js', 'dist/src/resource_server/index.js', 'dist/src/resource_server/index.d.ts',
        'dist/src/testing/index.js', 'dist/src/testing/index.d.ts', 'migrations/0001_oidc_payloads.js',
        // The admin console's static files, copied by the build.
        'dist/src/admin/console/index.html', 'dist/src/admin/console/console.js', 'dist/src/admin/console/console.css',
      ]));
      // The compiled output and what it reads at run time; no sources, tests, source maps, keys or local state.
      expect(files.filter((file) => !/^(package\.json|README\.md|bin\/tether\.js|dist\/src\/.+\.(js|d\.ts)|dist\/src\/admin\/console\/(index\.html|console\.css)|migrations\/\d{4}_\w+\.js|docs\/[\w.-]+\.(md|yaml))$/.test(file))).toEqual([]);

      // The verifier package the server depends on, packed from the same copy: both are published
      // together, and a user's install resolves it from the registry like any dependency.
      const verifierPack = await run('npm', ['pack', '--pack-destination', packed, '--json'], { cwd: path.join(source, 'packages', 'resource-server'), env, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
      const [verifierReport] = JSON.parse(verifierPack.stdout.slice(verifierPack.stdout.indexOf('['))) as { name: string; filename: string }[];
      expect(verifierReport!.name).toBe('tether-oauth-resource-server');

      // 2. Install the tarballs into a scratch project outside the repository.
      const consumer = path.join(scratch, 'consumer');
      await mkdir(consumer);
      await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'tether-consumer', private: true, type: 'module' }));
      // A user's install resolves every dependency from the registry: bound each fetch and retry it,
      // so a registry connection that stalls is retried instead of hanging the step.
      await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--fetch-timeout=60000', '--fetch-retries=5', path.join(packed, report!.filename), path.join(packed, verifierReport!.filename)], { cwd: consumer, env, timeout: STEP_TIMEOUT_MS })
        .catch((error: Error & { stderr?: string }) => {
          throw new Error(`npm install of the tarball failed: ${error.message}\n${error.stderr?.slice(-4000) ?? ''}`);
        });
      await writeFile(path.join(consumer, 'consumer.mjs'), CONSUMER);

      // 3. Its entry points, with file reads limited to the project and its own temporary folder.
      const temporary = path.join(scratch, 'tmp');
      await mkdir(temporary);
      const confined = [`--allow-fs-read=${consumer}/`, `--allow-fs-read=${temporary}/`, `--allow-fs-write=${temporary}/`];
      const consumerEnv = { PATH: env.PATH, HOME: env.HOME, TMPDIR: temporary };
      const used = await run(process.execPath, ['--permission', ...confined, 'consumer.mjs', path.join(ROOT, 'package.json')], { cwd: consumer, env: consumerEnv, timeout: STEP_TIMEOUT_MS });
      const installed = path.join(consumer, 'node_modules', 'tether-oauth');
      expect(JSON.parse(used.stdout)).toEqual({
        repository: 'ERR_ACCESS_DENIED',
        resolved: [`file://${installed}/dist/src/testing/index.js`, `file://${installed}/dist/src/resource_server/index.js`],
        iss: true, aud: 'https://orders.example.test', client_id: 'orders-worker', bound: true, otherCertificate: 'ERR_CERTIFICATE_MISMATCH',
      });

      // 4. The installed command (node_modules/.bin/tether → bin/tether.js → dist/), confined the same way.
      const command = path.join(consumer, 'node_modules', '.bin', 'tether');
      const cliEnv = { ...consumerEnv, NODE_OPTIONS: ['--permission', ...confined].join(' ') };
      const version = await run(command, ['--version'], { cwd: consumer, env: cliEnv, timeout: STEP_TIMEOUT_MS });
      expect(version.stdout).toBe(`${manifest.version}\n`);
      const help = await run(command, ['--help'], { cwd: consumer, env: cliEnv, timeout: STEP_TIMEOUT_MS });
      for (const name of ['dev', 'start', 'migrate', 'tokens', 'clients', 'keys', 'probe', 'pki', 'health']) {
        expect(help.stdout).toMatch(new RegExp(`^ {2}${name}\\b`, 'm'));
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }, 30 * 60_000);
});

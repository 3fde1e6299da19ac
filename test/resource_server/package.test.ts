// tether-oauth-resource-server is a package of its own: its manifest (jose, the root's version, is its
// only dependency), and the tarball `npm pack` makes, installed into a scratch project with nothing
// but its dependencies, verifying a real Tether token that it discovers the keys of over HTTPS.
import { execFile, execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTether } from '../../src/testing/index.js';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const STEP_TIMEOUT_MS = 5 * 60_000;
const run = promisify(execFile);
const json = async (file: string) => JSON.parse(await readFile(path.join(ROOT, file), 'utf8')) as Record<string, Record<string, unknown>>;

test('the manifest: name, ESM exports with types, only dist published, jose at the root\'s exact version and nothing else', async () => {
  const manifest = await json('packages/resource-server/package.json');
  const rootManifest = await json('package.json');
  expect(manifest).toMatchObject({
    name: 'tether-oauth-resource-server',
    type: 'module',
    exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    types: './dist/index.d.ts',
    files: ['dist'],
  });
  expect(manifest.dependencies).toEqual({ jose: rootManifest.dependencies!.jose });
  expect(manifest).not.toHaveProperty('devDependencies');
  expect(manifest).not.toHaveProperty('peerDependencies');
  // The server depends on it at its exact version (tether-oauth/resource-server re-exports it).
  expect(rootManifest.dependencies!['tether-oauth-resource-server']).toBe(manifest.version);
  const lock = await json('package-lock.json');
  expect((lock.packages as Record<string, unknown>)['packages/resource-server']).toMatchObject({ name: 'tether-oauth-resource-server', dependencies: manifest.dependencies });
});

// The consumer: verifies with the installed package only, discovering the issuer's metadata and JWKS
// over HTTPS (the harness CA through NODE_EXTRA_CA_CERTS); then the same token with another
// certificate, and a token changed by one byte.
const CONSUMER = `
import { createVerifier, isVerifierError } from 'tether-oauth-resource-server';

const [issuer, audience, token, thumbprint, otherThumbprint] = process.argv.slice(2);
const verifier = createVerifier({ issuer, audience });
const request = { method: 'GET', url: audience + '/orders', headers: { authorization: 'Bearer ' + token }, requiredScopes: ['orders:read'] };
const codeOf = (promise) => promise.then(() => 'accepted', (error) => (isVerifierError(error) ? error.code : String(error)));
const { claims, binding } = await verifier.verifyWithBinding({ ...request, clientCertificate: thumbprint });
const tampered = token.slice(0, -2) + (token.at(-2) === 'A' ? 'B' : 'A') + token.at(-1);
console.log(JSON.stringify({
  resolved: import.meta.resolve('tether-oauth-resource-server'),
  iss: claims.iss === issuer, aud: claims.aud, client_id: claims.client_id, binding,
  otherCertificate: await codeOf(verifier.verify({ ...request, clientCertificate: otherThumbprint })),
  tampered: await codeOf(verifier.verify({ ...request, headers: { authorization: 'Bearer ' + tampered }, clientCertificate: thumbprint })),
}));
`;

test('npm pack makes a tarball that installs with only jose and verifies a real Tether token', async () => {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'tether-verifier-pack-'));
  const tether = await startTether();
  try {
    const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { cwd: ROOT, encoding: 'utf8' }).trim();
    // The machine's environment (registry, proxy and CA settings), without what `npm test` set about this repository.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|INIT_CWD$)/i.test(name)));
    const env = { ...inherited, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, npm_config_cache: npmCache, npm_config_update_notifier: 'false' };

    // 1. Pack a copy of the package (prepack compiles it with the repository's compiler; the checkout is left alone).
    const source = path.join(scratch, 'source');
    const packageSource = path.join(source, 'packages', 'resource-server');
    await mkdir(packageSource, { recursive: true });
    for (const file of ['package.json', 'README.md', 'tsconfig.build.json', 'src']) await cp(path.join(ROOT, 'packages/resource-server', file), path.join(packageSource, file), { recursive: true });
    await cp(path.join(ROOT, 'tsconfig.json'), path.join(source, 'tsconfig.json'));
    await symlink(path.join(ROOT, 'node_modules'), path.join(source, 'node_modules'), 'dir');
    const packed = path.join(scratch, 'packed');
    await mkdir(packed);
    const pack = await run('npm', ['pack', '--pack-destination', packed, '--json'], { cwd: packageSource, env, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
    const [report] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { name: string; filename: string; files: { path: string }[] }[];
    expect(report!.name).toBe('tether-oauth-resource-server');
    const files = report!.files.map((file) => file.path);
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/client_cert_header.js']));
    expect(files.filter((file) => !/^(package\.json|README\.md|dist\/[a-z0-9_]+\.(js|d\.ts|js\.map))$/.test(file))).toEqual([]);

    // 2. Install it alone into a scratch project: its dependencies come from the registry (bounded, retried fetches).
    const consumer = path.join(scratch, 'consumer');
    await mkdir(consumer);
    await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'verifier-consumer', private: true, type: 'module' }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--fetch-timeout=60000', '--fetch-retries=5', path.join(packed, report!.filename)], { cwd: consumer, env, timeout: STEP_TIMEOUT_MS })
      .catch((error: Error & { stderr?: string }) => {
        throw new Error(`npm install of the tarball failed: ${error.message}\n${error.stderr?.slice(-4000) ?? ''}`);
      });
    expect((await readdir(path.join(consumer, 'node_modules'))).filter((name) => !name.startsWith('.')).sort()).toEqual(['jose', 'tether-oauth-resource-server']);
    await writeFile(path.join(consumer, 'consumer.mjs'), CONSUMER);

    // 3. A certificate-bound token from a real Tether, verified by the installed package.
    const resource = 'https://orders.example.test';
    const token = await tether.token({ client: 'orders-worker', resource, scope: 'orders:read' });
    const caFile = path.join(scratch, 'tether-ca.pem');
    await writeFile(caFile, tether.pki.ca.certificatePem);
    const args = ['consumer.mjs', tether.issuer, resource, token.accessToken, tether.pki.clients['orders-worker']!.thumbprint, tether.pki.server.thumbprint];
    const used = await run(process.execPath, args, { cwd: consumer, env: { PATH: env.PATH, HOME: os.homedir(), NODE_EXTRA_CA_CERTS: caFile }, timeout: STEP_TIMEOUT_MS });
    expect(JSON.parse(used.stdout)).toEqual({
      resolved: `file://${path.join(consumer, 'node_modules', 'tether-oauth-resource-server')}/dist/index.js`,
      iss: true, aud: resource, client_id: 'orders-worker', binding: 'mtls',
      otherCertificate: 'ERR_CERTIFICATE_MISMATCH', tampered: 'ERR_TOKEN_SIGNATURE',
    });
  } finally {
    await tether.close();
    await rm(scratch, { recursive: true, force: true });
  }
}, 15 * 60_000);

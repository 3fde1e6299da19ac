// tether-oauth-client is a package of its own: its manifest, its dependencies (jose and undici,
// the root's versions), imports of nothing outside itself, and a build that plain Node can load.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const json = (path: string) => JSON.parse(readFileSync(join(root, path), 'utf8')) as Record<string, Record<string, unknown>>;

test('the manifest: name, ESM exports with types, only dist published, jose and undici at the root\'s exact versions', () => {
  const manifest = json('packages/client/package.json');
  const rootManifest = json('package.json');
  expect(manifest).toMatchObject({
    name: 'tether-oauth-client',
    type: 'module',
    exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    types: './dist/index.d.ts',
    files: ['dist'],
  });
  expect(manifest.dependencies).toEqual({ jose: rootManifest.dependencies!.jose, undici: rootManifest.dependencies!.undici });
  expect(manifest).not.toHaveProperty('devDependencies');
  expect(rootManifest.workspaces).toEqual(['packages/*']);
  // The lock file knows the workspace, with the same dependencies.
  const lock = json('package-lock.json');
  expect((lock.packages as Record<string, unknown>)['packages/client']).toMatchObject({ name: 'tether-oauth-client', dependencies: manifest.dependencies });
});

test('its sources import only each other, node: built-ins, jose and undici — never the server', () => {
  const sourceDir = join(root, 'packages/client/src');
  const outside: string[] = [];
  let seen = 0;
  for (const file of readdirSync(sourceDir).filter((name) => name.endsWith('.ts'))) {
    const text = readFileSync(join(sourceDir, file), 'utf8');
    // Static imports and re-exports at the start of a line (not the examples in doc comments), and dynamic imports.
    const specifiers = [...text.matchAll(/^(?:import|export)\b[^;]*?from\s+'([^']+)'/gms), ...text.matchAll(/\bimport\(\s*'([^']+)'/g)].map((match) => match[1]);
    seen += specifiers.length;
    for (const specifier of specifiers) {
      if (!/^(\.\/[a-z_]+\.js|node:[a-z_/]+|jose|undici)$/.test(specifier!)) outside.push(`${file}: ${specifier}`);
    }
  }
  expect(seen).toBeGreaterThan(30);
  expect(outside).toEqual([]);
});

test('tsc builds it to its own dist, which plain Node (no TypeScript loader) imports and runs', () => {
  // Inside the package, so that the built files resolve jose and undici as an installed package would.
  const out = mkdtempSync(join(root, 'packages/client/.build-test-'));
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'packages/client/tsconfig.build.json'), '--outDir', out], { stdio: 'pipe' });
    expect(readdirSync(out)).toEqual(expect.arrayContaining(['index.js', 'index.d.ts', 'token_cache.js']));
    const script = `
      const client = await import(${JSON.stringify(join(out, 'index.js'))});
      const cache = client.createTokenCache({ maxEntries: 2 });
      const token = { value: 't', type: 'Bearer', resource: 'https://a', scopes: [], obtainedAt: Date.now(), expiresAt: Date.now() + 60000, claims: undefined };
      const got = await cache.get('k', async () => token);
      const c = client.createTokenClient({ metadata: { issuer: 'https://as.example', token_endpoint: 'https://as.example/token' }, clientId: 'x', auth: { method: 'client_secret_post', secret: 's' }, binding: { method: 'bearer' } });
      await c.close();
      console.log(JSON.stringify({ exports: Object.keys(client).sort(), hit: got === token }));
    `;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: out, encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual({
      exports: ['CLIENT_ERROR_CODES', 'ClientError', 'TokenEndpointError', 'createTokenCache', 'createTokenClient', 'isClientError'],
      hit: true,
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

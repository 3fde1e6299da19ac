// tether-oauth-resource-server is shipped to other teams on its own: its sources import only each
// other, node: built-ins and jose — nothing from the server (src/), which may import it instead.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(process.cwd(), 'packages', 'resource-server', 'src');

test('every import is a sibling module, a node: built-in or jose', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  expect(files.length).toBeGreaterThan(10);
  for (const file of files) {
    const source = readFileSync(join(dir, file), 'utf8');
    const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/g), ...source.matchAll(/import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
    for (const specifier of specifiers) {
      expect(`${file}: ${specifier}`).toMatch(/: (?:\.\/[a-z0-9_]+\.js|node:[a-z_/]+|jose)$/);
    }
  }
});

test('src/resource_server only re-exports the package (tether-oauth/resource-server keeps working)', () => {
  const shim = join(process.cwd(), 'src', 'resource_server');
  for (const file of readdirSync(shim)) {
    const source = readFileSync(join(shim, file), 'utf8');
    const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/g)].map((m) => m[1]);
    expect({ file, specifiers: [...new Set(specifiers)] }).toEqual({ file, specifiers: ['tether-oauth-resource-server'] });
  }
});

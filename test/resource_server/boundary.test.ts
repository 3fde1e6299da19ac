// tether-oauth/resource-server is shipped to other teams: it imports nothing from the rest of src/ and
// no package but node built-ins.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(process.cwd(), 'src', 'resource_server');

test('every import is a sibling module or a node: built-in', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  expect(files.length).toBeGreaterThan(10);
  for (const file of files) {
    const source = readFileSync(join(dir, file), 'utf8');
    const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/g), ...source.matchAll(/import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
    for (const specifier of specifiers) {
      expect(`${file}: ${specifier}`).toMatch(/: (?:\.\/[a-z0-9_]+\.js|node:[a-z_/]+)$/);
    }
  }
});

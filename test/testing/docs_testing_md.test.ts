// docs/testing.md shows examples/harness_in_jest.test.ts verbatim (with package imports), so the
// example in the document is the one `npm test` runs.
import { readFileSync } from 'node:fs';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

test('docs/testing.md holds examples/harness_in_jest.test.ts, imports as a package user writes them', () => {
  const documented = /<!-- example: examples\/harness_in_jest\.test\.ts -->\n```ts\n([\s\S]*?)```/.exec(read('docs/testing.md'))?.[1];
  const example = read('examples/harness_in_jest.test.ts')
    .replace("from '../src/resource_server/index.js'", "from 'tether-oauth/resource-server'")
    .replace("from '../src/testing/index.js'", "from 'tether-oauth/testing'");
  expect(documented).toBe(example);
});

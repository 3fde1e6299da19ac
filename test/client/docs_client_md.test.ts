// docs/client.md shows examples/token_exchange/checkout_service.ts verbatim (with package imports), so
// the worked example in the document is the one examples/token_exchange/checkout.test.ts runs.
import { readFileSync } from 'node:fs';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

test('docs/client.md holds examples/token_exchange/checkout_service.ts, imports as a package user writes them', () => {
  const documented = /<!-- example: examples\/token_exchange\/checkout_service\.ts -->\n```ts\n([\s\S]*?)```/.exec(read('docs/client.md'))?.[1];
  const example = read('examples/token_exchange/checkout_service.ts')
    .replace("from '../../src/resource_server/index.js'", "from 'tether-oauth/resource-server'")
    .replace("from '../../packages/client/src/index.js'", "from 'tether-oauth-client'");
  expect(example).not.toContain("from '../");
  expect(documented).toBe(example);
});

test('the failure table names every error code the package has', async () => {
  const docs = read('docs/client.md');
  const { CLIENT_ERROR_CODES } = await import('../../packages/client/src/errors.js');
  expect(CLIENT_ERROR_CODES.filter((code) => !docs.includes(`\`${code}\``))).toEqual([]);
});

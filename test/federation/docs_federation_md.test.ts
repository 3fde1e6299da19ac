import { readFile } from 'node:fs/promises';
import { parseConfig } from '../../src/config/load_config.js';
import { parse } from 'yaml';

/** Every configuration example in docs/federation.md is a valid configuration (the page says so). */

const page = await readFile(new URL('../../docs/federation.md', import.meta.url), 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

test('the page has its examples: the issuer fields, a federated client, a mapping rule, Kubernetes, GitHub Actions, SPIFFE JWT- and X.509-SVIDs', () => {
  expect(examples).toHaveLength(7);
});

test.each(examples.slice(1).map((text, index) => [index + 1, text] as const))('example %i parses as a whole configuration', (_index, text) => {
  const config = parseConfig({ ...(parse(text) as object), listeners: { https: { port: 8443 } } });
  expect(config.federation.issuers.length + config.federation.spiffe.trustDomains.length).toBeGreaterThan(0);
});

test('the first example is a valid federation section', () => {
  const federation = (parse(examples[0]!) as { federation: object }).federation;
  const config = parseConfig({
    issuer: 'https://tether.example', listeners: { https: { port: 8443 } }, federation,
    resources: [{ uri: 'https://api.example', scopes: ['read'] }],
    clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'mtls', auth: { method: 'tls_client_auth', subjectDn: 'CN=c' } }],
  });
  expect(config.federation.issuers[0]).toMatchObject({ maxTokenAge: 3600, clockLeeway: 30, algorithms: ['RS256'] });
});

// Remote JWKS: discovery, caching, refetch on unknown kid with cooldown, outages. Against a real
// loopback issuer with hit counts.
import { createVerifier, type Verifier } from '../../src/resource_server/index.js';
import { discoveryUrls } from '../../src/resource_server/issuer_metadata.js';
import { AUDIENCE, bearerRequest, expectCode, json, jwksOf, makeSigningKey, mintAccessToken, startIssuer, startTestServer, type SigningKey, type TestIssuer } from './helpers.js';

let key: SigningKey;
let issuer: TestIssuer;
let clock: number;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
});

beforeEach(async () => {
  issuer = await startIssuer(jwksOf(key));
  clock = Date.now();
});

afterEach(async () => {
  await issuer.close();
});

function remoteVerifier(extra: Partial<Parameters<typeof createVerifier>[0]> = {}): Verifier {
  return createVerifier({ issuer: issuer.issuer, audience: AUDIENCE, allowBearer: true, now: () => clock, ...extra });
}

function mint(signer: SigningKey = key): Promise<string> {
  return mintAccessToken(signer, { issuer: issuer.issuer });
}

const JWKS = '/jwks';
const METADATA = '/.well-known/oauth-authorization-server';

describe('discovery', () => {
  test('jwks_uri is discovered from RFC 8414 metadata once, and the JWKS is cached', async () => {
    const v = remoteVerifier();
    for (let i = 0; i < 5; i++) await expect(v.verify(bearerRequest(await mint()))).resolves.toBeDefined();
    expect(issuer.hits.get(METADATA)).toBe(1);
    expect(issuer.hits.get(JWKS)).toBe(1);
  });

  test('falls back to openid-configuration', async () => {
    const oidc = await startTestServer();
    try {
      oidc.route('/.well-known/openid-configuration', (_req, res) => json(res, { issuer: oidc.url, jwks_uri: `${issuer.url}/jwks` }));
      const v = createVerifier({ issuer: oidc.url, audience: AUDIENCE, allowBearer: true });
      await expect(v.verify(bearerRequest(await mintAccessToken(key, { issuer: oidc.url })))).resolves.toBeDefined();
      expect(oidc.hits.get(METADATA)).toBe(1);
      expect(oidc.hits.get('/.well-known/openid-configuration')).toBe(1);
    } finally {
      await oidc.close();
    }
  });

  test('metadata naming another issuer is refused (RFC 8414 §3.3): 503, keys never fetched', async () => {
    issuer.route(METADATA, (_req, res) => json(res, { issuer: 'https://evil.test', jwks_uri: `${issuer.url}/jwks` }));
    const err = await expectCode(remoteVerifier().verify(bearerRequest(await mint())), 'ERR_DISCOVERY_FAILED');
    expect(err).toMatchObject({ status: 503, oauthError: 'temporarily_unavailable' });
    expect(issuer.hits.get(JWKS)).toBeUndefined();
  });

  test('the well-known URL is inserted before the issuer path (RFC 8414 §3.1), then appended forms', () => {
    expect(discoveryUrls('https://as.test/tenant/a')).toEqual([
      'https://as.test/.well-known/oauth-authorization-server/tenant/a',
      'https://as.test/tenant/a/.well-known/oauth-authorization-server',
      'https://as.test/tenant/a/.well-known/openid-configuration',
    ]);
    expect(discoveryUrls('https://as.test')).toEqual([
      'https://as.test/.well-known/oauth-authorization-server',
      'https://as.test/.well-known/openid-configuration',
    ]);
  });

  test('an unreachable issuer is 503, retried only after a pause', async () => {
    const v = remoteVerifier({ jwksCooldownMs: 1000 });
    const token = await mint();
    issuer.route(METADATA, (_req, res) => json(res, { error: 'down' }, 500));
    await expectCode(v.verify(bearerRequest(token)), 'ERR_DISCOVERY_FAILED');
    await expectCode(v.verify(bearerRequest(token)), 'ERR_DISCOVERY_FAILED');
    expect(issuer.hits.get(METADATA)).toBe(1);
    issuer.route(METADATA, (_req, res) => json(res, { issuer: issuer.issuer, jwks_uri: `${issuer.url}/jwks` }));
    clock += 1000;
    await expect(v.verify(bearerRequest(token))).resolves.toBeDefined();
  });
});

describe('unknown kid', () => {
  test('refetches once, then fails; a kid unknown right after a fetch causes no refetch', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks`, jwksCooldownMs: 30_000 });
    await expect(v.verify(bearerRequest(await mint()))).resolves.toBeDefined();
    expect(issuer.hits.get(JWKS)).toBe(1);

    // The set was fetched just now: refetching cannot bring a newer one.
    const stranger = await makeSigningKey('ES256');
    await expectCode(v.verify(bearerRequest(await mint(stranger))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(1);

    clock += 30_000;
    await expectCode(v.verify(bearerRequest(await mint(stranger))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(2);
    await expectCode(v.verify(bearerRequest(await mint(stranger))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(2);
  });

  test('cooldown: at most one fetch per cooldown however many unknown kids arrive', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks`, jwksCooldownMs: 30_000 });
    await v.verify(bearerRequest(await mint()));
    expect(issuer.hits.get(JWKS)).toBe(1);

    clock += 30_000;
    const strangers = await Promise.all([1, 2, 3].map(() => makeSigningKey('ES256')));
    await expectCode(v.verify(bearerRequest(await mint(strangers[0]))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(2);
    for (const stranger of strangers) await expectCode(v.verify(bearerRequest(await mint(stranger))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(2);

    clock += 29_999;
    await expectCode(v.verify(bearerRequest(await mint(strangers[1]))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(2);
    clock += 1;
    await expectCode(v.verify(bearerRequest(await mint(strangers[1]))), 'ERR_JWKS_NO_MATCHING_KEY');
    expect(issuer.hits.get(JWKS)).toBe(3);
  });

  test('concurrent requests with unknown kids share one fetch', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks` });
    await v.verify(bearerRequest(await mint()));
    clock += 60_000;
    const stranger = await makeSigningKey('ES256');
    const tokens = await Promise.all(Array.from({ length: 20 }, () => mint(stranger)));
    const results = await Promise.allSettled(tokens.map((t) => v.verify(bearerRequest(t))));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(issuer.hits.get(JWKS)).toBe(2);
  });

  test('a rotated-in key is picked up by the refetch', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks` });
    await v.verify(bearerRequest(await mint()));
    clock += 60_000;
    const next = await makeSigningKey('ES256');
    issuer.jwks = jwksOf(key, next);
    await expect(v.verify(bearerRequest(await mint(next)))).resolves.toBeDefined();
    expect(issuer.hits.get(JWKS)).toBe(2);
    // Both keys are now cached: no further fetch.
    await v.verify(bearerRequest(await mint(key)));
    await v.verify(bearerRequest(await mint(next)));
    expect(issuer.hits.get(JWKS)).toBe(2);
  });
});

describe('cache lifetime and outages', () => {
  test('the JWKS is fetched again after jwksMaxAgeMs, and a stale set is kept when that fails', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks`, jwksMaxAgeMs: 60_000 });
    const token = await mint();
    await v.verify(bearerRequest(token));
    clock += 60_001;
    await v.verify(bearerRequest(token));
    expect(issuer.hits.get(JWKS)).toBe(2);

    issuer.route(JWKS, (_req, res) => json(res, { error: 'down' }, 500));
    clock += 60_001;
    await expect(v.verify(bearerRequest(token))).resolves.toBeDefined();
    expect(issuer.hits.get(JWKS)).toBe(3);
  });

  test('a removed key stops verifying after the next fetch', async () => {
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks`, jwksMaxAgeMs: 60_000 });
    const token = await mint();
    await v.verify(bearerRequest(token));
    issuer.jwks = { keys: [] };
    clock += 60_001;
    await expectCode(v.verify(bearerRequest(token)), 'ERR_JWKS_NO_MATCHING_KEY');
  });

  test.each([
    ['HTTP 500', (res: import('node:http').ServerResponse) => json(res, {}, 500)],
    ['not JSON', (res: import('node:http').ServerResponse) => res.end('<html>')],
    ['no keys array', (res: import('node:http').ServerResponse) => json(res, { keys: 'x' })],
    ['a redirect', (res: import('node:http').ServerResponse) => {
      res.statusCode = 302;
      res.setHeader('location', 'https://evil.test/jwks');
      res.end();
    }],
    ['too large', (res: import('node:http').ServerResponse) => json(res, { keys: [], pad: 'x'.repeat(600 * 1024) })],
  ])('a JWKS answer that is %s: 503 ERR_JWKS_UNAVAILABLE', async (_name, answer) => {
    issuer.route(JWKS, (_req, res) => answer(res));
    const err = await expectCode(remoteVerifier({ jwksUri: `${issuer.url}/jwks` }).verify(bearerRequest(await mint())), 'ERR_JWKS_UNAVAILABLE');
    expect(err.status).toBe(503);
  });

  test('a slow JWKS times out as ERR_JWKS_UNAVAILABLE', async () => {
    issuer.route(JWKS, () => undefined); // never answers
    const v = remoteVerifier({ jwksUri: `${issuer.url}/jwks`, httpTimeoutMs: 200 });
    await expectCode(v.verify(bearerRequest(await mint())), 'ERR_JWKS_UNAVAILABLE');
  });

  test('a custom fetch is used for every issuer request', async () => {
    const urls: string[] = [];
    const v = remoteVerifier({
      fetch: (input, init) => {
        urls.push(input);
        return fetch(input, init);
      },
    });
    await v.verify(bearerRequest(await mint()));
    expect(urls).toEqual([`${issuer.url}${METADATA}`, `${issuer.url}/jwks`]);
  });
});

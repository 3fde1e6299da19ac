// Optional revocation: RFC 7662 introspection at a real loopback issuer, and a cached revocation list.
import { createHash } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent } from 'undici';
import { createVerifier, toHttpError, type RevocationOptions, type Verifier } from '../../src/resource_server/index.js';
import {
  AUDIENCE,
  bearerRequest,
  expectCode,
  json,
  jwksOf,
  makeCertificates,
  makeSigningKey,
  mintAccessToken,
  startIssuer,
  type CertificateFiles,
  type SigningKey,
  type TestIssuer,
} from './helpers.js';

let key: SigningKey;
let issuer: TestIssuer;
let requests: { authorization: string | undefined; contentType: string | undefined; body: URLSearchParams }[];
let active: boolean;
let clock: number;

beforeAll(async () => {
  key = await makeSigningKey('ES256');
});

beforeEach(async () => {
  issuer = await startIssuer(jwksOf(key));
  requests = [];
  active = true;
  clock = Date.now();
  issuer.route('/introspect', (req, res, body) => {
    requests.push({ authorization: req.headers.authorization, contentType: req.headers['content-type'], body: new URLSearchParams(body) });
    json(res, active ? { active: true, scope: 'orders:read' } : { active: false });
  });
});

afterEach(async () => {
  await issuer.close();
});

function verifierWith(revocation: RevocationOptions): Verifier {
  return createVerifier({ issuer: issuer.issuer, audience: AUDIENCE, jwks: jwksOf(key), allowBearer: true, revocation, now: () => clock });
}

function mint(jti?: string): Promise<string> {
  return mintAccessToken(key, { issuer: issuer.issuer, claims: jti === undefined ? {} : { jti } });
}

describe('introspection (RFC 7662)', () => {
  test('POSTs the token with client_secret_basic and accepts active tokens', async () => {
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { clientId: 'api:orders', clientSecret: 's3cr+t' } } });
    const token = await mint();
    await expect(v.verify(bearerRequest(token))).resolves.toBeDefined();
    expect(requests).toHaveLength(1);
    const [request] = requests;
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
    expect(request?.authorization).toBe(`Basic ${Buffer.from('api%3Aorders:s3cr%2Bt').toString('base64')}`);
    expect(request?.contentType).toBe('application/x-www-form-urlencoded');
    expect(request?.body.get('token')).toBe(token);
    expect(request?.body.get('token_type_hint')).toBe('access_token');
  });

  test('active: false → ERR_TOKEN_REVOKED (invalid_token)', async () => {
    active = false;
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { clientId: 'api', clientSecret: 's' } } });
    const err = await expectCode(v.verify(bearerRequest(await mint())), 'ERR_TOKEN_REVOKED');
    expect(err).toMatchObject({ status: 401, oauthError: 'invalid_token' });
  });

  test('the endpoint is discovered from the issuer metadata; client_secret_post and tls_client_auth put client_id in the body', async () => {
    const post = verifierWith({ introspect: { clientAuth: { method: 'client_secret_post', clientId: 'api', clientSecret: 's' } } });
    await post.verify(bearerRequest(await mint()));
    expect(requests[0]?.authorization).toBeUndefined();
    expect(requests[0]?.body.get('client_id')).toBe('api');
    expect(requests[0]?.body.get('client_secret')).toBe('s');
    const tls = verifierWith({ introspect: { clientAuth: { method: 'tls_client_auth', clientId: 'api' } } });
    await tls.verify(bearerRequest(await mint()));
    expect(requests[1]?.body.get('client_id')).toBe('api');
    expect(requests[1]?.body.has('client_secret')).toBe(false);
  });

  test('custom client authentication headers are sent as given', async () => {
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { method: 'custom', headers: { authorization: 'Bearer rs-token' } } } });
    await v.verify(bearerRequest(await mint()));
    expect(requests[0]?.authorization).toBe('Bearer rs-token');
  });

  test('failures are 503 ERR_REVOCATION_UNAVAILABLE, never access', async () => {
    issuer.route('/introspect', (_req, res) => json(res, { error: 'x' }, 500));
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { clientId: 'api', clientSecret: 's' } } });
    const err = await expectCode(v.verify(bearerRequest(await mint())), 'ERR_REVOCATION_UNAVAILABLE');
    expect(err.status).toBe(503);
    issuer.route('/introspect', (_req, res) => res.end('not json'));
    await expectCode(v.verify(bearerRequest(await mint())), 'ERR_REVOCATION_UNAVAILABLE');
  });

  test('active answers are cached per jti for cacheTtlMs', async () => {
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { clientId: 'api', clientSecret: 's' }, cacheTtlMs: 10_000 } });
    const token = await mint();
    await v.verify(bearerRequest(token));
    await v.verify(bearerRequest(token));
    expect(requests).toHaveLength(1);
    clock += 10_001;
    active = false;
    await expectCode(v.verify(bearerRequest(token)), 'ERR_TOKEN_REVOKED');
    expect(requests).toHaveLength(2);
  });

  test('tls_client_auth: the resource server certificate comes from an undici dispatcher (RFC 8705 §2)', async () => {
    const certs = makeCertificates(['issuer', 'resource-server']);
    const server = certs.issuer as CertificateFiles;
    const client = certs['resource-server'] as CertificateFiles;
    const seen: { thumbprint: string | undefined; clientId: string | null }[] = [];
    const https = createServer({ key: server.key, cert: server.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = (req.socket as TLSSocket).getPeerCertificate(true).raw as Buffer | undefined;
        seen.push({
          thumbprint: raw === undefined ? undefined : createHash('sha256').update(raw).digest('base64url'),
          clientId: new URLSearchParams(Buffer.concat(chunks).toString()).get('client_id'),
        });
        json(res, { active: true });
      });
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const dispatcher = new Agent({ connect: { ca: server.cert, cert: client.cert, key: client.key } });
    try {
      const endpoint = `https://127.0.0.1:${(https.address() as AddressInfo).port}/introspect`;
      const v = verifierWith({ introspect: { endpoint, clientAuth: { method: 'tls_client_auth', clientId: 'api' }, fetchOptions: { dispatcher } } });
      await expect(v.verify(bearerRequest(await mint()))).resolves.toBeDefined();
      expect(seen).toEqual([{ thumbprint: client.thumbprint, clientId: 'api' }]);
    } finally {
      await dispatcher.close();
      https.closeAllConnections();
      await new Promise<void>((resolve) => https.close(() => resolve()));
    }
  });

  test('introspection runs only after the local checks pass', async () => {
    const v = verifierWith({ introspect: { endpoint: `${issuer.url}/introspect`, clientAuth: { clientId: 'api', clientSecret: 's' } } });
    await expectCode(v.verify(bearerRequest(await mintAccessToken(key, { issuer: issuer.issuer, audience: 'https://other.test' }))), 'ERR_TOKEN_AUDIENCE');
    expect(requests).toHaveLength(0);
  });
});

describe('revocation list', () => {
  test('a listed jti is refused; the list is loaded once per refresh period', async () => {
    let loads = 0;
    let revoked = ['revoked-1'];
    const v = verifierWith({ revocationList: { load: async () => (loads++, revoked), refreshMs: 60_000 } });
    await expectCode(v.verify(bearerRequest(await mint('revoked-1'))), 'ERR_TOKEN_REVOKED');
    await expect(v.verify(bearerRequest(await mint('fine')))).resolves.toBeDefined();
    expect(loads).toBe(1);
    revoked = ['fine'];
    clock += 60_000;
    await expectCode(v.verify(bearerRequest(await mint('fine'))), 'ERR_TOKEN_REVOKED');
    expect(loads).toBe(2);
  });

  test('the list may be given as just its loading function', async () => {
    const v = verifierWith({ revocationList: async () => new Set(['revoked-1']) });
    await expectCode(v.verify(bearerRequest(await mint('revoked-1'))), 'ERR_TOKEN_REVOKED');
    await expect(v.verify(bearerRequest(await mint('other')))).resolves.toBeDefined();
  });

  test('a list that never loaded is 503; a list that fails to refresh keeps the last one', async () => {
    let fail = true;
    const v = verifierWith({
      revocationList: {
        load: async () => {
          if (fail) throw new Error('db down');
          return ['revoked-1'];
        },
        refreshMs: 1000,
      },
    });
    await expectCode(v.verify(bearerRequest(await mint())), 'ERR_REVOCATION_UNAVAILABLE');
    fail = false;
    // A failed load is retried after min(refreshMs, 5 s), not by every request (issue 12).
    await expectCode(v.verify(bearerRequest(await mint())), 'ERR_REVOCATION_UNAVAILABLE');
    clock += 1000;
    await expectCode(v.verify(bearerRequest(await mint('revoked-1'))), 'ERR_TOKEN_REVOKED');
    fail = true;
    clock += 1000;
    await expectCode(v.verify(bearerRequest(await mint('revoked-1'))), 'ERR_TOKEN_REVOKED');
  });
});

// Issue 12, item 12: before, a list that kept failing to refresh was used for ever (each failure
// renewed its age), so a token revoked after the last good load stayed accepted for days.
describe('revocation list: bounded staleness, then fail closed', () => {
  /** A token valid at the test clock (which moves by days here). */
  function mintNow(jti: string): Promise<string> {
    const seconds = Math.floor(clock / 1000);
    return mintAccessToken(key, { issuer: issuer.issuer, claims: { jti, iat: seconds, exp: seconds + 300 } });
  }

  function failingList(options: { refreshMs?: number; maxStaleMs?: number; loadTimeoutMs?: number } = {}) {
    const state = { fail: false, loads: 0, revoked: ['revoked-1'] as string[] };
    const v = verifierWith({
      revocationList: {
        load: async () => {
          state.loads++;
          if (state.fail) throw new Error('revocation store down');
          return state.revoked;
        },
        ...options,
      },
    });
    return { v, state };
  }

  test('a loader that keeps failing: the last list serves until maxStaleMs, then 503 ERR_REVOCATION_UNAVAILABLE until a load succeeds', async () => {
    const { v, state } = failingList({ refreshMs: 1000, maxStaleMs: 3000 });
    const start = clock;
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
    expect(state.loads).toBe(1);

    // The store goes down; meanwhile "revoked-2" is revoked, which the verifier cannot learn.
    state.fail = true;
    state.revoked = ['revoked-1', 'revoked-2'];
    clock = start + 1000;
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-1'))), 'ERR_TOKEN_REVOKED');
    await expect(v.verify(bearerRequest(await mintNow('revoked-2')))).resolves.toBeDefined();
    expect(state.loads).toBe(2);
    // A failed refresh is not retried on every request while the last list may still serve.
    clock = start + 1999;
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
    expect(state.loads).toBe(2);
    clock = start + 2999;
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
    expect(state.loads).toBe(3);

    // Past the bound: every request is refused, revoked or not.
    clock = start + 3000;
    const refused = await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
    expect(refused).toMatchObject({ status: 503, oauthError: 'temporarily_unavailable', message: 'revocation list is unavailable' });
    const response = toHttpError(refused);
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.body).toEqual({ error: 'temporarily_unavailable', error_description: 'revocation list is unavailable' });
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-2'))), 'ERR_REVOCATION_UNAVAILABLE');

    // Days later, still closed (the review's attack: before, revoked-2 was accepted here). The
    // source is asked again once per retry delay, not by every request.
    clock = start + 3 * 86_400_000;
    const loadsBefore = state.loads;
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-2'))), 'ERR_REVOCATION_UNAVAILABLE');
    await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
    expect(state.loads - loadsBefore).toBe(1);

    // The store is back: the first request after the retry delay loads the current list.
    state.fail = false;
    clock += 1000;
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-2'))), 'ERR_TOKEN_REVOKED');
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
  });

  test('the default bound is five refresh periods', async () => {
    const { v, state } = failingList({ refreshMs: 1000 });
    const start = clock;
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
    state.fail = true;
    clock = start + 4999;
    await expect(v.verify(bearerRequest(await mintNow('fine')))).resolves.toBeDefined();
    clock = start + 5000;
    await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
  });

  test('16 requests at once past the bound: all 503, one load attempt', async () => {
    const { v, state } = failingList({ refreshMs: 1000, maxStaleMs: 1000 });
    const start = clock;
    await v.verify(bearerRequest(await mintNow('fine')));
    state.fail = true;
    clock = start + 1000;
    const tokens = await Promise.all(Array.from({ length: 16 }, (_, i) => mintNow(`t-${i}`)));
    const loadsBefore = state.loads;
    const results = await Promise.allSettled(tokens.map((token) => v.verify(bearerRequest(token))));
    expect(results.map((result) => result.status === 'rejected' && (result.reason as { code?: string }).code)).toEqual(Array(16).fill('ERR_REVOCATION_UNAVAILABLE'));
    expect(state.loads - loadsBefore).toBe(1);
    // A revocation mid-burst is seen by the first request after the store is back and the retry delay.
    state.fail = false;
    state.revoked = ['t-3'];
    clock += 1000;
    const after = await Promise.allSettled(tokens.map((token) => v.verify(bearerRequest(token))));
    expect(after.map((result) => (result.status === 'rejected' ? (result.reason as { code?: string }).code : 'ok'))).toEqual(
      tokens.map((_, i) => (i === 3 ? 'ERR_TOKEN_REVOKED' : 'ok')),
    );
  });

  test('a load that hangs is bounded by loadTimeoutMs: 503 when no list may serve, never a hang', async () => {
    let hang = false;
    let loads = 0;
    const v = verifierWith({
      revocationList: {
        load: () => {
          loads++;
          return hang ? new Promise<string[]>(() => undefined) : Promise.resolve(['revoked-1']);
        },
        refreshMs: 1000,
        maxStaleMs: 2000,
        loadTimeoutMs: 20,
      },
    });
    const start = clock;
    hang = true;
    await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
    hang = false;
    // Within the retry delay no load is started; after it, the hung load (still in flight) is
    // joined rather than a second one started, and the wait is bounded again.
    await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
    clock = start + 1000;
    await expectCode(v.verify(bearerRequest(await mintNow('fine'))), 'ERR_REVOCATION_UNAVAILABLE');
    expect(loads).toBe(1);
  });

  test('a slow load that ends after the timeout is used when it ends', async () => {
    let release: ((jtis: string[]) => void) | undefined;
    const v = verifierWith({
      revocationList: { load: () => new Promise<string[]>((resolve) => { release = resolve; }), loadTimeoutMs: 20 },
    });
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-1'))), 'ERR_REVOCATION_UNAVAILABLE');
    release!(['revoked-1']);
    await expectCode(v.verify(bearerRequest(await mintNow('revoked-1'))), 'ERR_TOKEN_REVOKED');
  });

  test.each([
    [{ refreshMs: 0 }, /refreshMs/],
    [{ refreshMs: Number.NaN }, /refreshMs/],
    [{ refreshMs: 1000, maxStaleMs: 999 }, /maxStaleMs/],
    [{ maxStaleMs: Infinity }, /maxStaleMs/],
    [{ loadTimeoutMs: 0 }, /loadTimeoutMs/],
  ])('invalid timings %j are a TypeError at creation', (timings, message) => {
    expect(() => verifierWith({ revocationList: { load: async () => [], ...timings } })).toThrow(message);
    expect(() => verifierWith({ revocationList: { load: async () => [], ...timings } })).toThrow(TypeError);
  });
});

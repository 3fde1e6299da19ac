import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { createDpopKey, dpopProof, type DpopKey } from '../../src/testing/dpop.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, startTestTether, type TokenResponse } from '../support/tether.js';
import { startKubernetesIssuer, type KubernetesIssuer } from './support/kubernetes_issuer.js';

/**
 * The two other key sources: a JWKS file (an air-gapped cluster, or GitHub Actions' issuer whose
 * keys are pinned), and an explicit jwks_uri (no discovery document is asked for). GitHub Actions
 * tokens are shaped as GitHub issues them (sub `repo:<owner>/<repo>:environment:<name>`,
 * repository_owner, job_workflow_ref, …).
 */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const GITHUB = 'https://token.actions.githubusercontent.com';
const DEPLOY_SUB = 'repo:octo-org/octo-repo:environment:production';
const WORKFLOW = 'octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main';
const SPIRE = 'https://spire.example.org';
const SPIFFE_ID = 'spiffe://example.org/ns/payments/sa/worker';

let cluster: KubernetesIssuer;
let tether: RunningTether;
let githubKey: CryptoKey;
let githubKid: string;
let jwksFile: string;
let dpopKey: DpopKey;
let bundleFile: string;
let jwtAuthority: { key: CryptoKey; kid: string };
let x509Authority: { key: CryptoKey; kid: string };

beforeAll(async () => {
  cluster = await startKubernetesIssuer();
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  githubKey = privateKey;
  githubKid = randomUUID();
  jwksFile = join(await mkdtemp(join(tmpdir(), 'tether-gh-jwks-')), 'github-actions-jwks.json');
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: githubKid, alg: 'RS256', use: 'sig' }] }));
  // A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4): a JWT authority and an X.509 authority.
  const [jwtPair, x509Pair] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256')]);
  jwtAuthority = { key: jwtPair.privateKey, kid: randomUUID() };
  x509Authority = { key: x509Pair.privateKey, kid: randomUUID() };
  bundleFile = join(tmpdir(), `tether-spiffe-bundle-${randomUUID()}.json`);
  await writeFile(bundleFile, JSON.stringify({
    spiffe_sequence: 7, spiffe_refresh_hint: 300,
    keys: [
      { ...(await exportJWK(jwtPair.publicKey)), kid: jwtAuthority.kid, use: 'jwt-svid' },
      { ...(await exportJWK(x509Pair.publicKey)), kid: x509Authority.kid, use: 'x509-svid', x5c: ['MIIBplaceholder'] },
    ],
  }));
  tether = await startTestTether({ config: configWith(jwksFile) });
  dpopKey = await createDpopKey();
});

afterAll(async () => {
  await tether?.close();
  await cluster?.close();
});

function configWith(file: string): Record<string, unknown> {
  return {
    ...testConfig({
      clients: [
        {
          id: 'deploy-bot', owner: 'team-platform', purpose: 'deploys from GitHub Actions', binding: 'dpop', auth: { method: 'federated' },
          federatedIdentities: [{ issuer: GITHUB, subject: DEPLOY_SUB, claims: { repository_owner: 'octo-org', job_workflow_ref: WORKFLOW } }],
          resources: { [ORDERS]: ['orders:write'] },
        },
        {
          id: 'spiffe-worker', owner: 'team-payments', purpose: 'tests', binding: 'dpop', auth: { method: 'federated' },
          federatedIdentities: [{ issuer: SPIRE, subject: SPIFFE_ID }],
          resources: { [ORDERS]: ['orders:read'] },
        },
        {
          id: 'cluster-worker', owner: 'team-payments', purpose: 'tests', binding: 'dpop', auth: { method: 'federated' },
          federatedIdentities: [{ issuer: cluster.issuer, subject: 'system:serviceaccount:payments:worker' }],
          resources: { [ORDERS]: ['orders:read'] },
        },
      ],
    }),
    federation: {
      issuers: [
        { issuer: GITHUB, jwksFile: file, algorithms: ['RS256'], maxTokenAge: '10m' },
        { issuer: cluster.issuer, jwksUri: `${cluster.issuer}/openid/v1/jwks`, caFile: cluster.caFile, algorithms: ['RS256'] },
        { issuer: SPIRE, jwksFile: bundleFile, algorithms: ['ES256'], maxTokenAge: '5m' },
      ],
    },
  };
}

/** An Actions OIDC token as GitHub writes it (docs.github.com, "About security hardening with OpenID Connect"). */
function actionsToken(overrides: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    jti: randomUUID(), sub: DEPLOY_SUB, aud: tether.issuer, ref: 'refs/heads/main', sha: 'example-sha', repository: 'octo-org/octo-repo',
    repository_owner: 'octo-org', repository_owner_id: '5', run_id: '12', run_number: '3', run_attempt: '1', repository_visibility: 'private',
    repository_id: '74', actor_id: '12', actor: 'octocat', workflow: 'deploy', head_ref: '', base_ref: '', event_name: 'workflow_dispatch',
    ref_type: 'branch', environment: 'production', job_workflow_ref: WORKFLOW, iss: GITHUB, nbf: now - 5, exp: now + 300, iat: now,
    ...overrides,
  }).setProtectedHeader({ alg: 'RS256', kid: githubKid, typ: 'JWT', x5t: 'ignored-thumbprint' }).sign(githubKey);
}

async function authenticate(clientId: string, assertion: string): Promise<TokenResponse> {
  return postForm(tether.tokenEndpoint, {
    grant_type: 'client_credentials', client_id: clientId, client_assertion_type: JWT_BEARER, client_assertion: assertion, resource: ORDERS,
  }, { dispatcher: tether.dispatcherFor(), headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: tether.tokenEndpoint }) } });
}

describe('a JWKS file (GitHub Actions keys pinned)', () => {
  test('the deploy workflow of the production environment authenticates as deploy-bot', async () => {
    const response = await authenticate('deploy-bot', await actionsToken());
    expect(response.status).toBe(200);
    expect(decodeJwt(response.body.access_token as string)).toMatchObject({ sub: 'deploy-bot', scope: 'orders:write', cnf: { jkt: dpopKey.thumbprint } });
  });

  test('a pull request, a fork, another workflow: refused', async () => {
    for (const overrides of [
      { sub: 'repo:octo-org/octo-repo:pull_request' },
      { repository_owner: 'fork-owner' },
      { job_workflow_ref: 'octo-org/octo-repo/.github/workflows/other.yml@refs/heads/main' },
    ]) {
      const response = await authenticate('deploy-bot', await actionsToken(overrides));
      expect({ status: response.status, error: response.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    }
  });

  test('a missing key file fails the start, naming it', async () => {
    await expect(startTestTether({ config: configWith(join(tmpdir(), 'no-such-dir', 'jwks.json')) })).rejects.toThrow(/no-such-dir\/jwks\.json/);
  });
});

describe('an explicit jwks_uri', () => {
  test('keys are fetched from it; the discovery document is never asked for', async () => {
    const token = await cluster.serviceAccountToken({ namespace: 'payments', name: 'worker', audience: tether.issuer });
    expect((await authenticate('cluster-worker', token)).status).toBe(200);
    expect(cluster.requests).toEqual({ discovery: 0, jwks: 1 });
  });
});

describe('a SPIFFE trust bundle as the key file (JWT-SVIDs)', () => {
  /** A JWT-SVID as SPIRE issues it (SPIFFE JWT-SVID §3): sub the SPIFFE ID, aud, exp, iat, iss when configured; no jti. */
  const svid = (authority: { key: CryptoKey; kid: string }, overrides: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sub: SPIFFE_ID, aud: [tether.issuer], iss: SPIRE, iat: now, exp: now + 300, ...overrides })
      .setProtectedHeader({ alg: 'ES256', kid: authority.kid, typ: 'JWT' }).sign(authority.key);
  };

  test('a JWT-SVID signed by a JWT authority authenticates, again within its lifetime (no jti), bound to the DPoP key', async () => {
    const token = await svid(jwtAuthority);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const response = await authenticate('spiffe-worker', token);
      expect(response.status).toBe(200);
      expect(decodeJwt(response.body.access_token as string).cnf).toEqual({ jkt: dpopKey.thumbprint });
    }
  });

  test('signed by the bundle\'s X.509 authority, or for another SPIFFE ID: invalid_client', async () => {
    for (const token of [await svid(x509Authority), await svid(jwtAuthority, { sub: 'spiffe://example.org/ns/payments/sa/other' })]) {
      const response = await authenticate('spiffe-worker', token);
      expect({ status: response.status, error: response.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    }
  });
});

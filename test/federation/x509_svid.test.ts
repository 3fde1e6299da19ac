/**
 * Issue 17 item 4: `tls_client_auth` by X.509-SVID over real TLS. A client registered with a SPIFFE ID
 * authenticates with a certificate whose one URI SAN is exactly that ID and which its trust domain's
 * bundle issued; the token is bound to that certificate. Every other certificate is refused with
 * 401 invalid_client and a ledger rejection naming why.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { Agent } from 'undici';
import { thumbprintOf } from '../../src/binding/certificate_thumbprint.js';
import { loadSpiffeBundles } from '../../src/federation/x509_svid.js';
import { buildCertificate, keyIdentifierOf, nameOf, subjectNameOf, type AlternativeName } from '../../src/keys/certificate_builder.js';
import { createEphemeralPki, type Pki } from '../../src/keys/dev_pki.js';
import type { RunningTether } from '../../src/testing/start_tether.js';
import { ORDERS, testConfig } from '../support/config.js';
import { postForm, type TokenResponse, startTestTether } from '../support/tether.js';

const WORKER = 'spiffe://example.org/ns/orders/sa/worker';
const HOUR_MS = 3_600_000;

let tether: RunningTether;
let directory: string;
let exampleOrg: Pki;
let otherOrg: Pki;
const agents: Agent[] = [];

beforeAll(async () => {
  [exampleOrg, otherOrg] = await Promise.all([createEphemeralPki(), createEphemeralPki()]);
  directory = await mkdtemp(join(tmpdir(), 'tether-spiffe-'));
  await Promise.all([
    writeFile(join(directory, 'example.org.pem'), exampleOrg.ca.certificatePem),
    writeFile(join(directory, 'other.org.pem'), otherOrg.ca.certificatePem),
  ]);
  tether = await startTestTether({
    config: {
      ...testConfig({
        clients: [{
          id: 'orders-worker', owner: 'team-orders', purpose: 'tests', binding: 'mtls',
          auth: { method: 'tls_client_auth', spiffeId: WORKER },
          resources: { [ORDERS]: ['orders:read'] },
        }],
      }),
      federation: {
        spiffe: {
          trustDomains: [
            { trustDomain: 'example.org', bundleFile: join(directory, 'example.org.pem') },
            { trustDomain: 'other.org', bundleFile: join(directory, 'other.org.pem') },
          ],
        },
      },
    },
  });
});

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.close()));
  await tether?.close();
  if (directory) await rm(directory, { recursive: true, force: true });
});

interface Svid {
  certificatePem: string;
  privateKeyPem: string;
  thumbprint: string;
}

/** A certificate signed by `authority`'s CA: an X.509-SVID unless the options make it something else. */
function svid(authority: Pki, uris: readonly string[], options: { role?: 'clientAuth' | 'ca'; commonName?: string; expired?: boolean } = {}): Svid {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ca = new X509Certificate(authority.ca.certificatePem);
  const now = Date.now();
  const der = buildCertificate({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    subject: nameOf([['CN', options.commonName ?? 'workload']]),
    issuer: subjectNameOf(ca.raw),
    notBefore: new Date(now - 2 * HOUR_MS),
    notAfter: new Date(options.expired ? now - HOUR_MS : now + HOUR_MS),
    publicKey: keys.publicKey,
    signingKey: createPrivateKey(authority.ca.privateKeyPem),
    authorityKeyIdentifier: keyIdentifierOf(ca.publicKey),
    role: options.role ?? 'clientAuth',
    alternativeNames: uris.map((value): AlternativeName => ({ type: 'uri', value })),
  });
  return { certificatePem: new X509Certificate(der).toString(), privateKeyPem: pemKey(keys.privateKey), thumbprint: thumbprintOf(der) };
}

function pemKey(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

async function tokenRequest(clientId: string, certificate: Svid | undefined): Promise<TokenResponse> {
  const agent = new Agent({ connect: { ca: tether.pki.ca.certificatePem, ...(certificate && { cert: certificate.certificatePem, key: certificate.privateKeyPem }) } });
  agents.push(agent);
  return postForm(tether.tokenEndpoint, { grant_type: 'client_credentials', client_id: clientId, resource: ORDERS }, { dispatcher: agent });
}

/** The newest rejection of a client, after the anonymous-rejection window is written out. */
async function lastRejection(clientId: string): Promise<Record<string, unknown>> {
  await tether.app.unauthenticatedRejections.flush();
  const row = await tether.database.knex('ledger_events').where({ type: 'request.rejected', client_id: clientId }).orderBy('id', 'desc').first();
  return typeof row.details === 'string' ? JSON.parse(row.details) : row.details;
}

test('a valid X.509-SVID gets a token bound to that certificate (RFC 8705 §3)', async () => {
  const certificate = svid(exampleOrg, [WORKER]);
  const { status, body } = await tokenRequest('orders-worker', certificate);
  expect({ status, type: body.token_type }).toEqual({ status: 200, type: 'Bearer' });
  const claims = decodeJwt(body.access_token as string);
  expect({ client: claims.client_id, cnf: claims.cnf }).toEqual({ client: 'orders-worker', cnf: { 'x5t#S256': certificate.thumbprint } });
});

test.each([
  ['another SPIFFE ID of the trust domain', () => svid(exampleOrg, ['spiffe://example.org/ns/orders/sa/reader']), /SPIFFE ID "spiffe:\/\/example\.org\/ns\/orders\/sa\/reader" is not the client's/],
  ['the same path in another trust domain (its own bundle)', () => svid(otherOrg, ['spiffe://other.org/ns/orders/sa/worker']), /SPIFFE ID "spiffe:\/\/other\.org\/ns\/orders\/sa\/worker" is not the client's/],
  ['the client\'s SPIFFE ID signed by another trust domain\'s CA', () => svid(otherOrg, [WORKER]), /not issued by an authority of trust domain "example\.org"'s bundle/],
  ['two URI SANs (X.509-SVID §2)', () => svid(exampleOrg, [WORKER, 'spiffe://example.org/ns/orders/sa/admin']), /exactly one URI SAN; this certificate has 2/],
  ['a non-SPIFFE URI SAN', () => svid(exampleOrg, ['https://example.org/ns/orders/sa/worker']), /URI SAN is not a SPIFFE ID/],
  ['a CA certificate as leaf (X.509-SVID §4.1)', () => svid(exampleOrg, [WORKER], { role: 'ca' }), /is a CA certificate/],
  ['an expired X.509-SVID', () => svid(exampleOrg, [WORKER], { expired: true }), /expired or not yet valid/],
  ['a client-CA certificate with the SPIFFE ID', () => svid(tether.pki, [WORKER]), /not issued by an authority of trust domain "example\.org"'s bundle/],
])('%s → 401 invalid_client and a ledger rejection', async (_label, make, reason) => {
  const { status, body } = await tokenRequest('orders-worker', make());
  expect({ status, body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } });
  expect(await lastRejection('orders-worker')).toMatchObject({ error: 'invalid_client', status: 401, reason: expect.stringMatching(reason) });
});

test('no certificate → 401 invalid_client and a ledger rejection', async () => {
  const { status, body } = await tokenRequest('orders-worker', undefined);
  expect({ status, body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } });
  expect(await lastRejection('orders-worker')).toMatchObject({ error: 'invalid_client', status: 401, reason: expect.stringMatching(/client certificate was not provided/) });
});

test('a SPIFFE bundle never counts for a client of the client CA: an SVID with its subject DN → 401', async () => {
  const { status, body } = await tokenRequest('mtls-client', svid(exampleOrg, [WORKER], { commonName: 'mtls-client' }));
  expect({ status, body }).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'client authentication failed' } });
  expect(await lastRejection('mtls-client')).toMatchObject({ error: 'invalid_client', status: 401, reason: expect.stringMatching(/client certificate was not verified/) });
});

describe('bundles are read at start', () => {
  test('a missing bundle file fails the start', () => {
    expect(() => loadSpiffeBundles([{ trustDomain: 'example.org', bundleFile: join(directory, 'absent.pem') }])).toThrow(/ENOENT/);
  });

  test('a bundle holding a leaf certificate fails the start, naming the file and the problem', async () => {
    const file = join(directory, 'leaf.pem');
    await writeFile(file, svid(exampleOrg, [WORKER]).certificatePem);
    expect(() => loadSpiffeBundles([{ trustDomain: 'example.org', bundleFile: file }]))
      .toThrow(`federation.spiffe.trustDomains[0].bundleFile (${file}) certificate 1 (CN=workload) is not a CA certificate (basicConstraints CA:TRUE)`);
  });

  test('every authority of a bundle file counts', async () => {
    const file = join(directory, 'both.pem');
    await writeFile(file, `${exampleOrg.ca.certificatePem}\n${otherOrg.ca.certificatePem}`);
    const bundles = loadSpiffeBundles([{ trustDomain: 'example.org', bundleFile: file }]);
    expect(bundles.get('example.org')!.map((authority) => authority.fingerprint256))
      .toEqual([exampleOrg.ca.certificatePem, otherOrg.ca.certificatePem].map((pem) => new X509Certificate(pem).fingerprint256));
  });
});

import type { Server } from 'node:http';
import { devBanner } from '../../src/cli/dev_banner.js';
import { parseConfig } from '../../src/config/load_config.js';
import type { RunningListener } from '../../src/http/listeners.js';

// The banner prints what actually listens; an issuer set to a port nothing here listens on is
// pointed out (discovery and every token name it), and a derived one never is.

const raw = {
  resources: [{ uri: 'https://api.example', scopes: ['read'] }],
  clients: [
    { id: 'cli', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_post', secret: 'banner-secret-0123456789' }, resources: { 'https://api.example': ['read'] } },
    { id: 'signer', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'private_key_jwt', jwksUri: 'https://signer.example/jwks' } },
  ],
};
const listening = (port: number): RunningListener[] => [{ kind: 'https', origin: `https://localhost:${port}`, server: undefined as unknown as Server }];

describe('the dev banner', () => {
  test('an explicit issuer on a port nothing here listens on is pointed out', () => {
    const config = parseConfig({ ...raw, issuer: 'https://localhost:8443', listeners: { https: { port: 8443 } } }, { env: { TETHER_HTTPS_PORT: '9443' } });
    const banner = devBanner(config, listening(9443), undefined);
    expect(banner.split('\n').slice(0, 3)).toEqual([
      'Tether (development) — issuer https://localhost:8443',
      '  https      https://localhost:9443  (asks for client certificates)',
      '  note       the issuer was set explicitly (issuer or TETHER_ISSUER) and nothing here listens on localhost:8443: right behind a proxy; otherwise set issuer: auto',
    ]);
  });

  test('a derived issuer is what listens; every client with how it authenticates', () => {
    const config = parseConfig({ ...raw, listeners: { https: { port: 8443 } } }, { env: { TETHER_HTTPS_PORT: '9443' } });
    const banner = devBanner(config, listening(9443), undefined);
    expect(banner).toContain('Tether (development) — issuer https://localhost:9443\n');
    expect(banner).not.toContain('note ');
    expect(banner).toContain('  cli     client_secret_post: -d client_secret=banner-secret-0123456789; DPoP-bound tokens');
    expect(banner).toContain('  signer  private_key_jwt: a client assertion signed with a key of its jwksUri https://signer.example/jwks; DPoP-bound tokens');
  });
});

import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import { signingPolicyOf } from '../../src/keys/signing_policy.js';
import { DEFAULT_JWKS_MAX_AGE_MS } from '../../src/resource_server/verifier.js';

// The `signing` section (docs/configuration.md#signing-keys): the timings that keep verifiers working.

const withSigning = (signing: Record<string, unknown> | undefined) => ({
  issuer: 'https://auth.example',
  ...(signing ? { signing } : {}),
  resources: [{ uri: 'https://a.example', lifetime: '5m' }, { uri: 'https://b.example', lifetime: '15m' }],
  clients: [{ id: 'c', owner: 'o', purpose: 'p', binding: 'dpop', auth: { method: 'client_secret_basic', secret: '0123456789abcdef' } }],
});

function messageOf(signing: Record<string, unknown>): string {
  try {
    parseConfig(withSigning(signing), { source: 'tether.config.yaml' });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('signing configuration', () => {
  test('defaults: the publication delay is the verifier package\'s JWKS cache age; the tail is the longest lifetime + 60 s', () => {
    const config = parseConfig(withSigning(undefined));
    expect(config.signing).toEqual({
      algorithm: 'ES256', allowPlaintextKeys: false, verifierJwksMaxAge: DEFAULT_JWKS_MAX_AGE_MS / 1000, publicationDelay: 600, reloadInterval: 30, unknownKidCooldown: 30,
    });
    expect(signingPolicyOf(config)).toMatchObject({ publicationDelaySeconds: 600, retirementTailSeconds: 900 + 60, rotateEverySeconds: undefined });
  });

  test('a publication delay shorter than the verifiers\' cache age is refused, naming the field', () => {
    expect(messageOf({ publicationDelay: '5m' })).toBe(
      'tether.config.yaml: signing.publicationDelay: a new key must be published at least as long as verifiers cache the JWKS (signing.verifierJwksMaxAge: 600 s) (got "5m")',
    );
    // Declaring that every verifier caches for less allows a shorter delay.
    expect(parseConfig(withSigning({ verifierJwksMaxAge: '1m', publicationDelay: '2m' })).signing.publicationDelay).toBe(120);
  });

  test('scheduled rotation must be longer than the publication delay', () => {
    expect(messageOf({ rotateEvery: '10m' })).toBe(
      'tether.config.yaml: signing.rotateEvery: must be longer than the publication delay (600 s): each key must sign before the next one is staged (got "10m")',
    );
    expect(parseConfig(withSigning({ rotateEvery: '720h' })).signing.rotateEvery).toBe(720 * 3600);
  });

  test('unknown fields and bad durations are refused', () => {
    expect(messageOf({ rotate: '1h' })).toMatch(/^tether\.config\.yaml: signing: Unrecognized key/);
    expect(messageOf({ reloadInterval: 'soon' })).toMatch(/^tether\.config\.yaml: signing\.reloadInterval: expected a duration/);
  });
});

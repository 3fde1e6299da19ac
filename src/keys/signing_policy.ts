import type { TetherConfig } from '../config/schema.js';
import type { SigningAlgorithm } from './signing_keys.js';

/**
 * The timing of key rotation, derived from the configuration (docs/operations.md#signing-keys):
 *
 * - a new key is published `publicationDelaySeconds` before it signs, so that every verifier's cached
 *   JWKS holds it before the first token it signed arrives;
 * - a retired key stays published `retirementTailSeconds` after it stopped signing: the longest token
 *   lifetime plus leeway for clock skew, so that no token it signed outlives its publication.
 */
export interface SigningPolicy {
  algorithm: SigningAlgorithm;
  encryptionSecret: string | undefined;
  publicationDelaySeconds: number;
  retirementTailSeconds: number;
  rotateEverySeconds: number | undefined;
  reloadIntervalMs: number;
  unknownKidCooldownMs: number;
}

/**
 * Clock skew a verifier may allow past `exp` (the tether-oauth/resource-server verifier allows 5 s,
 * many others 60 s): a retired key stays published this much longer than the longest token lifetime.
 */
export const RETIREMENT_LEEWAY_SECONDS = 60;

/** The longest lifetime of any token Tether issues: exchanged tokens never outlive their resource's lifetime either. */
export function longestTokenLifetimeSeconds(config: Pick<TetherConfig, 'resources'>): number {
  return Math.max(...config.resources.map((resource) => resource.lifetime));
}

export function signingPolicyOf(config: Pick<TetherConfig, 'signing' | 'resources'>): SigningPolicy {
  const { signing } = config;
  return {
    algorithm: signing.algorithm,
    encryptionSecret: signing.encryptionSecret,
    publicationDelaySeconds: signing.publicationDelay,
    retirementTailSeconds: longestTokenLifetimeSeconds(config) + RETIREMENT_LEEWAY_SECONDS,
    rotateEverySeconds: signing.rotateEvery,
    reloadIntervalMs: signing.reloadInterval * 1000,
    unknownKidCooldownMs: signing.unknownKidCooldown * 1000,
  };
}

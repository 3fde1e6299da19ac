import type { LiveSigningKeys } from './live_signing_keys.js';
import { ALLOWED_JWS_ALGORITHMS } from '../provider/client_metadata.js';
import {
  createMemoryReplayStore, createVerifier, SUPPORTED_ALGORITHMS, type JsonWebKeySet, type SupportedAlgorithm, type Verifier,
} from '../resource_server/index.js';

/**
 * A resource-server verifier for one of Tether's own APIs (the admin API, the use-report endpoint):
 * Tether's access tokens for `audience`, checked exactly as any API checks them (signature by a key
 * Tether publishes now, `iss`, `aud`, expiry, and the sender constraint: RFC 8705 certificate or
 * RFC 9449 DPoP proof; bearer tokens are refused). Rebuilt whenever the published keys change.
 */

export interface BoundTokenVerifierOptions {
  issuer: string;
  keys: Pick<LiveSigningKeys, 'current'>;
}

/** The signing algorithms Tether may use that the verifier accepts. */
export const isSupportedAlgorithm = (alg: string): alg is SupportedAlgorithm => (SUPPORTED_ALGORITHMS as readonly string[]).includes(alg);

/** The DPoP proof algorithms Tether's own APIs name in their challenges. */
export const OWN_API_ALGORITHMS: readonly SupportedAlgorithm[] = ALLOWED_JWS_ALGORITHMS.filter(isSupportedAlgorithm);

/** Builds the verifier for the keys published now, and again whenever they change. */
export function boundTokenVerifier(options: BoundTokenVerifierOptions, audience: string): () => Verifier {
  let built: { jwks: unknown; verifier: Verifier } | undefined;
  // One replay store for every verifier of this app: a proof seen before a key change stays seen.
  const replayStore = createMemoryReplayStore();
  return () => {
    const { publicJwks } = options.keys.current();
    if (built?.jwks !== publicJwks) {
      built = {
        jwks: publicJwks,
        verifier: createVerifier({
          issuer: options.issuer,
          audience,
          jwks: publicJwks as JsonWebKeySet,
          algorithms: OWN_API_ALGORITHMS,
          allowBearer: false,
          dpop: { replayStore },
        }),
      };
    }
    return built.verifier;
  };
}

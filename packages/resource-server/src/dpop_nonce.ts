/**
 * Server-provided DPoP nonces (RFC 9449 §9): when configured, a proof must carry a nonce the server
 * handed out recently, which bounds how far ahead a stolen key can pre-compute proofs.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';

/** Issues and checks DPoP nonces. Share one source between instances of the same API. */
export interface DpopNonceSource {
  /** The nonce clients should use now; sent in the `DPoP-Nonce` header with `use_dpop_nonce`. */
  current(): string | Promise<string>;
  /** True when `nonce` is acceptable (the current one, or one recently replaced). */
  isValid(nonce: string): boolean | Promise<boolean>;
}

/** Options of {@link createRotatingDpopNonce}. */
export interface RotatingDpopNonceOptions {
  /** How long a nonce is current (default 300 s); the previous one stays valid as long again. */
  rotationSeconds?: number;
  /** Clock in epoch milliseconds (for tests). */
  now?: () => number;
}

/**
 * A per-process nonce source: a random nonce that rotates every `rotationSeconds`, with the
 * previous one still accepted so that clients holding it do not all fail at a rotation.
 */
export function createRotatingDpopNonce(options: RotatingDpopNonceOptions = {}): DpopNonceSource {
  const rotationMs = (options.rotationSeconds ?? 300) * 1000;
  const now = options.now ?? Date.now;
  if (!(rotationMs > 0)) throw new TypeError('rotationSeconds must be positive');
  let current = newNonce();
  let previous: string | undefined;
  let rotatedAt = now();

  function rotate(): void {
    const t = now();
    if (t - rotatedAt < rotationMs) return;
    // After two periods of silence the old current nonce is stale too.
    previous = t - rotatedAt < 2 * rotationMs ? current : undefined;
    current = newNonce();
    rotatedAt = t;
  }

  return {
    current() {
      rotate();
      return current;
    },
    isValid(nonce) {
      rotate();
      return nonce === current || (previous !== undefined && nonce === previous);
    },
  };
}

function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';

/**
 * The alternative the signing section measures (not used by Tether: it did not measure faster,
 * docs/benchmarks.md "Signing through ExternalSigningKey"): an ES256 key that oidc-provider signs with
 * through its public ExternalSigningKey interface (features.externalSigningSupport), with
 * node:crypto's synchronous ECDSA P-256 / SHA-256, signature in JOSE's r‖s form (RFC 7518 §3.4).
 * oidc-provider assembles the same JWS; only the signature call differs.
 */
class NodeCryptoEs256Key extends ExternalSigningKey {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  #kid: string | undefined;

  constructor(jwk: JWK) {
    super();
    this.#privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' });
    this.#publicKey = createPublicKey(this.#privateKey);
    this.#kid = jwk.kid;
  }

  override get kid(): string | undefined {
    return this.#kid;
  }

  // oidc-provider assigns a kid to a key that has none (initialize_keystore.js); Tether's keys all have one.
  override set kid(value: string | undefined) {
    this.#kid = value;
  }

  override get alg(): string {
    return 'ES256';
  }

  override set alg(value: string | undefined) {
    if (value !== 'ES256') throw new Error(`an ES256 key cannot sign ${String(value)}`);
  }

  override keyObject(): KeyObject {
    return this.#publicKey;
  }

  override sign(data: Uint8Array): Uint8Array {
    return sign('sha256', data, { key: this.#privateKey, dsaEncoding: 'ieee-p1363' });
  }
}

/** node:crypto's key for an ES256 private JWK; any other JWK as it is. */
export function signingKeyOf(jwk: JWK): JWK | ExternalSigningKey {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && jwk.alg === 'ES256' && typeof jwk.d === 'string') return new NodeCryptoEs256Key(jwk);
  return jwk;
}

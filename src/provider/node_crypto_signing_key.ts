import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';

/**
 * An ES256 signing key that oidc-provider signs with through its public ExternalSigningKey
 * interface (features.externalSigningSupport): node:crypto's synchronous ECDSA P-256 with SHA-256,
 * signature in JOSE's r‖s form (RFC 7518 §3.4). The token is the same JWS oidc-provider builds
 * (it assembles header and payload itself); only the signature call differs: on Node 24, jose as
 * oidc-provider calls it (WebCrypto, a job and a promise per signature) costs 88–105 µs, this
 * 57–70 µs (docs/benchmarks.md, "Signing through ExternalSigningKey").
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

/** The key oidc-provider signs with for a private JWK: node:crypto for ES256, the JWK itself (jose) for any other. */
export function signingKeyOf(jwk: JWK): JWK | ExternalSigningKey {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && jwk.alg === 'ES256' && typeof jwk.d === 'string') return new NodeCryptoEs256Key(jwk);
  return jwk;
}

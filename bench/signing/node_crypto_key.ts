import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import { signingKeyOf } from '../../src/provider/node_crypto_signing_key.js';

/**
 * The form the signing section measures beside what Tether ships (src/provider/node_crypto_signing_key.ts):
 * the same key, except that node:crypto's `sign` is given `{ key, dsaEncoding: 'ieee-p1363' }`
 * instead of the KeyObject alone. It was the first attempt (docs/benchmarks.md, "Signing through
 * oidc-provider's ExternalSigningKey"): that call form costs about twice as much, and saved nothing.
 */
class P1363OptionEs256Key extends ExternalSigningKey {
  readonly #shipped: ExternalSigningKey;
  readonly #privateKey: KeyObject;

  constructor(jwk: JWK) {
    super();
    this.#shipped = signingKeyOf(jwk) as ExternalSigningKey;
    this.#privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' });
  }

  // The bench's key has its kid and alg: oidc-provider never assigns them here.
  override get kid(): string | undefined {
    return this.#shipped.kid;
  }

  override get alg(): string | undefined {
    return this.#shipped.alg;
  }

  override keyObject(): ReturnType<ExternalSigningKey['keyObject']> {
    return this.#shipped.keyObject();
  }

  override sign(data: Uint8Array): Uint8Array {
    return sign('sha256', data, { key: this.#privateKey, dsaEncoding: 'ieee-p1363' });
  }
}

/** The `dsaEncoding` form's key for an ES256 private JWK. */
export function p1363OptionKeyOf(jwk: JWK): ExternalSigningKey {
  return new P1363OptionEs256Key(jwk);
}

import { createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';

/**
 * An ES256 signing key that oidc-provider signs with through its public ExternalSigningKey
 * interface (features.externalSigningSupport): node:crypto's synchronous ECDSA P-256 with SHA-256,
 * the signature re-encoded from DER into JOSE's R || S form (RFC 7518 §3.4). oidc-provider builds the
 * same JWS (header and payload are its own, lib/helpers/jwt.js); only the signature call differs.
 *
 * Why: node:crypto's `sign` given the `KeyObject` alone costs about half of what the same call costs
 * given `{ key, dsaEncoding: 'ieee-p1363' }`, and less than half of jose's WebCrypto job as
 * oidc-provider calls it (docs/benchmarks.md, "Signing through node:crypto with the KeyObject alone").
 * An earlier attempt used the `dsaEncoding` form and saved nothing measurable.
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
    return joseEcdsaSignature(sign('sha256', data, this.#privateKey), P256_INTEGER_BYTES);
  }
}

/** P-256 scalars are 32 bytes (RFC 7518 §3.4). */
const P256_INTEGER_BYTES = 32;

/**
 * A DER `ECDSA-Sig-Value` (SEQUENCE { INTEGER r, INTEGER s }, RFC 3279 §2.2.3) as R || S, each
 * left-padded to `size` bytes (RFC 7518 §3.4). OpenSSL's output is trusted to be DER, but anything
 * that is not exactly that shape throws rather than produce a wrong signature.
 */
export function joseEcdsaSignature(der: Uint8Array, size: number): Uint8Array {
  if (der[0] !== 0x30) throw new Error('ECDSA signature is not a DER SEQUENCE');
  // Short-form length, or the one-byte long form (0x81) of P-521's larger signatures (X.690 §8.1.3).
  let at = der[1] === 0x81 ? 3 : 2;
  const contentLength = at === 3 ? der[2] : der[1];
  if (contentLength !== der.length - at) throw new Error('ECDSA signature length does not match its DER header');
  const out = new Uint8Array(2 * size);
  for (let part = 0; part < 2; part++) {
    const length = der[at + 1] as number;
    if (der[at] !== 0x02 || at + 2 + length > der.length) throw new Error('ECDSA signature is not two DER INTEGERs');
    let value = der.subarray(at + 2, at + 2 + length);
    // DER prefixes a 0x00 when the top bit is set; it is not part of the value.
    while (value.length > size && value[0] === 0) value = value.subarray(1);
    if (value.length > size) throw new Error('ECDSA signature integer is longer than the curve');
    out.set(value, part * size + size - value.length);
    at += 2 + length;
  }
  if (at !== der.length) throw new Error('ECDSA signature has bytes after its two INTEGERs');
  return out;
}

/** The key oidc-provider signs with for a private JWK: node:crypto for ES256, the JWK itself (jose) for any other. */
export function signingKeyOf(jwk: JWK): JWK | ExternalSigningKey {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && jwk.alg === 'ES256' && typeof jwk.d === 'string') return new NodeCryptoEs256Key(jwk);
  return jwk;
}

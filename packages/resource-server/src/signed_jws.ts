/**
 * A signed JWT's JWS (RFC 7515 §5.2) checked up to its payload: shape, header rules, the key the
 * caller resolves for the header's `alg` and `kid`, and the signature; only then is the payload parsed.
 * Claims are the caller's: access tokens (verify_access_token.ts), and the Tether server's own tokens
 * handed back to it (its src/keys/own_tokens.ts), which this package exports it for.
 *
 * @module
 */
import type { SupportedAlgorithm } from './algorithms.js';
import { parseCompactJws, decodeJsonObject, type JsonObject, type JwsErrorCodes } from './compact_jws.js';
import { VerifierError } from './errors.js';
import type { HeaderMemo } from './header_memo.js';
import { isValidSignature, type VerificationKey } from './jws_signature.js';
import type { SignatureMemo } from './signature_memo.js';

/** What the JWS checks need from the configuration. */
export interface SignedJwsRules {
  /** Largest accepted compact serialization, checked before any decoding. */
  readonly maxBytes: number;
  /** The algorithms accepted, exactly as spelled in `alg`. */
  readonly algorithms: ReadonlySet<string>;
  /** Signatures already verified (signature_memo.ts); absent, every signature is checked. */
  readonly memo?: SignatureMemo;
  /** Headers of tokens already verified (header_memo.ts); absent, every header is decoded. */
  readonly headers?: HeaderMemo;
}

/** The key for a header's algorithm and key id; rejects (with any error, passed on) when there is none. */
export type SignedJwsKey = (alg: SupportedAlgorithm, kid: string | undefined) => Promise<VerificationKey>;

const TOKEN_CODES: JwsErrorCodes = { tooLarge: 'ERR_TOKEN_TOO_LARGE', malformed: 'ERR_TOKEN_MALFORMED', encrypted: 'ERR_TOKEN_ENCRYPTED' };

/**
 * The protected header and the payload of `compact` once its signature is known to be `key`'s;
 * rejects with a {@link VerifierError} (`ERR_TOKEN_*`) for anything else, or with what `key` rejects with.
 */
export async function verifySignedJws(compact: string, rules: SignedJwsRules, key: SignedJwsKey): Promise<{ header: JsonObject; payload: JsonObject }> {
  const jws = parseCompactJws(compact, rules.maxBytes, TOKEN_CODES, 'access token', rules.headers);
  const { alg, kid } = checkHeader(jws.header, rules.algorithms);
  const verificationKey = await key(alg, kid);
  // The same string verified by the same key object before: the check is a pure function of both.
  if (rules.memo?.verifiedWith(compact, verificationKey) !== true) {
    if (!isValidSignature(alg, verificationKey, jws.signingInput, jws.signature)) {
      throw new VerifierError('ERR_TOKEN_SIGNATURE', 'access token signature is invalid');
    }
    rules.memo?.record(compact, verificationKey);
  }
  rules.headers?.record(jws.headerSegment, jws.header);
  // Nothing of the payload is looked at before its signature is known to be the issuer's.
  const payload = decodeJsonObject(jws.payload);
  if (payload === undefined) throw new VerifierError('ERR_TOKEN_MALFORMED', 'access token claims are not a JSON object');
  return { header: jws.header, payload };
}

/**
 * The header rules: the allowed algorithm, no `crit`, a string `kid`. `jku`, `x5u`, `jwk` and `x5c`
 * are deliberately not looked at: the key comes from the caller's keys alone.
 */
function checkHeader(header: JsonObject, algorithms: ReadonlySet<string>): { alg: SupportedAlgorithm; kid: string | undefined } {
  const { alg, kid } = header;
  // RFC 8725 §3.1: only the algorithms configured, before any key is looked up; the comparison is
  // exact, so `none`, `None` and `nOnE` all fail here (and `none` can never be configured).
  if (typeof alg !== 'string' || !algorithms.has(alg)) {
    throw new VerifierError('ERR_TOKEN_ALGORITHM', 'access token algorithm is not allowed');
  }
  // RFC 7515 §4.1.11: we understand no extension, so any `crit` must be refused (`b64`, RFC 7797,
  // included: the payload is always base64url-encoded).
  if (header.crit !== undefined) throw new VerifierError('ERR_TOKEN_CRIT', 'access token has critical header parameters');
  if (kid !== undefined && typeof kid !== 'string') throw new VerifierError('ERR_TOKEN_MALFORMED', 'access token kid is not a string');
  return { alg: alg as SupportedAlgorithm, kid };
}
